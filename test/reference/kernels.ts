// Float64 reference of every kernel of codegen/abi.ts, written for clarity, not speed. Inputs are the
// values the kernels read (storage already decoded, see test/harness/kernels/storage.ts). Attention is the
// naive definition: for each row and head, every visible position (the pass's `visible` and `score`
// evaluated by the IR interpreter, the oracle), then a plain softmax. Where the CPU kernels make a
// documented numerics choice, the reference makes it too (README, "CPU numerics"): with bf16 storage the
// q.k products take q rounded to bf16, P.V the softmax weights rounded to bf16, the GEMMs x rounded to bf16,
// and bf16 subnormals of either operand count as zero (VDPBF16PS): cpuGemmInputs and attentionRef's 'cpu'
// numerics.
import { kvCacheRow } from '../../codegen/abi.ts';
import { evaluate } from '../../codegen/interp.ts';
import type { ModulePlan, PassPlan } from '../../codegen/plan.ts';
import { bf16FromF32, f16FromF32, f32FromBf16, f32FromF16 } from '../harness/kernels/storage.ts';

type Vec = ArrayLike<number>;

export function embedRef(table: Vec, tokens: Vec, hidden: number): Float64Array {
  const out = new Float64Array(tokens.length * hidden);
  for (let r = 0; r < tokens.length; r++) for (let i = 0; i < hidden; i++) out[r * hidden + i] = table[tokens[r] * hidden + i];
  return out;
}

export function rmsnormRef(x: Vec, w: Vec, rows: number, hidden: number, eps: number): Float64Array {
  const y = new Float64Array(rows * hidden);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < hidden; i++) ss += x[r * hidden + i] ** 2;
    const inv = 1 / Math.sqrt(ss / hidden + eps);
    for (let i = 0; i < hidden; i++) y[r * hidden + i] = x[r * hidden + i] * inv * w[i];
  }
  return y;
}

export function addRef(a: Vec, b: Vec): Float64Array {
  return Float64Array.from(a, (v, i) => v + b[i]);
}

/** A bf16 operand as the CPU's VDPBF16PS dot products read it: a subnormal counts as zero. */
const dotInput = (x: number) => (Math.abs(x) < 2 ** -126 ? 0 : x);
/** An activation as the CPU rounds it for a bf16 dot product (q for q.k, x for a GEMM with bf16 weights). */
const dotActivation = (x: number) => dotInput(f32FromBf16(bf16FromF32(x)));

/** gemmRef's x and w for a CPU GEMM with `dtype` weights: with bf16, the operands VDPBF16PS takes. */
export function cpuGemmInputs(dtype: string, x: Vec, w: Vec): [Vec, Vec] {
  return dtype === 'bf16' ? [Float64Array.from(x, dotActivation), Float64Array.from(w, dotInput)] : [x, w];
}

export function gemmRef(x: Vec, w: Vec, bias: Vec | undefined, rows: number, n: number, k: number): Float64Array {
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j] : 0;
      for (let i = 0; i < k; i++) s += x[r * k + i] * w[j * k + i];
      y[r * n + j] = s;
    }
  return y;
}

export function swigluRef(gate: Vec, up: Vec): Float64Array {
  return Float64Array.from(gate, (g, i) => (g / (1 + Math.exp(-g))) * up[i]);
}

/** Rotate-half RoPE of `x` [rows, heads, headDim] at positions `pos` [rows]. */
export function ropeRef(x: Vec, pos: Vec, heads: number, headDim: number, invFreq: readonly number[]): Float64Array {
  const half = headDim / 2;
  const out = Float64Array.from(x);
  for (let r = 0; r < pos.length; r++)
    for (let h = 0; h < heads; h++) {
      const o = (r * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const a = pos[r] * invFreq[i];
        const [x1, x2] = [x[o + i], x[o + i + half]];
        out[o + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
        out[o + i + half] = x2 * Math.cos(a) + x1 * Math.sin(a);
      }
    }
  return out;
}

/**
 * The K or V cache md_rope_append leaves: `cache` (decoded values, codegen/abi.ts kvCacheRow's layout) with
 * row r's heads of `rows` [rows, kvHeads, headDim] (already rounded to storage) written at position
 * pos[r] of physical page page(r), for every row `writes(r)` allows.
 */
export function appendedCacheRef(
  shape: { readonly kvHeads: number; readonly headDim: number; readonly pageSize: number },
  cache: Vec,
  rows: Vec,
  pos: Vec,
  page: (r: number) => number,
  writes: (r: number) => boolean = () => true,
): Float64Array {
  const out = Float64Array.from(cache);
  const { kvHeads, headDim: D } = shape;
  for (let r = 0; r < pos.length; r++) {
    if (!writes(r)) continue;
    for (let h = 0; h < kvHeads; h++) {
      const at = kvCacheRow(shape, page(r), pos[r] % shape.pageSize, h);
      for (let d = 0; d < D; d++) out[at + d] = rows[(r * kvHeads + h) * D + d];
    }
  }
  return out;
}

/** Lowest index wins ties; NaN never wins; an all-NaN row gives 0. */
export function argmaxRef(logits: Vec, rows: number, vocab: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = -1;
    for (let i = 0; i < vocab; i++) {
      const v = logits[r * vocab + i];
      if (!Number.isNaN(v) && (best < 0 || v > logits[r * vocab + best])) best = i;
    }
    out[r] = Math.max(best, 0);
  }
  return out;
}

export function verifyGreedyRef(target: Vec, draft: Vec, batch: number, gamma: number): { accepted: Int32Array; next: Int32Array } {
  const accepted = new Int32Array(batch);
  const next = new Int32Array(batch);
  for (let b = 0; b < batch; b++) {
    let a = 0;
    while (a < gamma && draft[b * gamma + a] === target[b * (gamma + 1) + a]) a++;
    accepted[b] = a;
    next[b] = target[b * (gamma + 1) + a];
  }
  return { accepted, next };
}

export interface AttentionCase {
  /** [rows, heads, headDim] */
  readonly q: Vec;
  /** Decoded cache values, [numPages, kvHeads, pageSize, headDim] (codegen/abi.ts kvCacheRow). */
  readonly kCache: Vec;
  readonly vCache: Vec;
  readonly pageTable: Vec;
  readonly pagesPerSeq: number;
  readonly rowSeq: Vec;
  readonly rowPos: Vec;
  readonly seqLen: Vec;
  /** The pass's runtime params in ABI order. */
  readonly params: readonly number[];
}

/** Whether row position q sees kv position t (t < seq_len is the caller's business). */
export function visibleRef(pass: PassPlan, params: readonly number[], q: number, t: number): boolean {
  return evaluate(pass.visible, { vars: { q, kv: t }, params: paramRecord(pass, params) }) as boolean;
}

export function paramRecord(pass: PassPlan, params: readonly number[]): Record<string, number> {
  return Object.fromEntries(pass.params.map((p) => [p.key, params[p.index]]));
}

/**
 * What an attention kernel's output should be, and per output how far from it the kernel may also be:
 * with bf16 P (below) a weight that lies within the kernel's f32 error of a bf16 rounding boundary may
 * round either way, and `slack` adds up what that can move each output.
 */
export interface AttentionReference {
  readonly out: Float64Array;
  readonly slack: Float64Array;
}

/** x rounded to bf16 / fp16 (round to nearest even). */
const toBf16 = (x: number) => f32FromBf16(bf16FromF32(Math.fround(x)));
const toF16 = (x: number) => f32FromF16(f16FromF32(Math.fround(x)));

/**
 * `numerics`: whose documented rounding the reference models. 'cpu' (README, "CPU numerics"): with bf16
 * storage, q rounded to bf16 and bf16 subnormals of q and k flushed for the dot, and P rounded to bf16 for
 * P.V: each weight is exp(s - m) with m the running maximum of the row's visible scores in its split-KV
 * chunk up to its page (the kernel's online softmax), rounded before it multiplies V, while l sums the
 * unrounded weights. 'cuda': none (the CUDA-core kernel multiplies fp32 q by the decoded k, and P by V in
 * f32). 'cuda-mma' (the tensor-core kernel, codegen/backends/cuda.ts attnUsesMma): q and P rounded to the
 * storage type (bf16 or fp16), at the same points as the CPU's, subnormals kept.
 */
export function attentionRef(plan: ModulePlan, pass: PassPlan, c: AttentionCase, numerics: 'cpu' | 'cuda' | 'cuda-mma' = 'cpu'): AttentionReference {
  const { heads, kvHeads, headDim: D, group } = plan.dims;
  const rows = c.rowSeq.length;
  const out = new Float64Array(rows * heads * D);
  const slack = new Float64Array(rows * heads * D);
  const params = paramRecord(pass, c.params);
  const shape = { kvHeads, headDim: D, pageSize: plan.pageSize };
  const at = (slot: number, t: number, kvh: number) => kvCacheRow(shape, c.pageTable[slot * c.pagesPerSeq + Math.floor(t / plan.pageSize)], t % plan.pageSize, kvh);
  const { dtype } = plan.deployment;
  // The operands of q.k and of P.V as the kernel takes them: `rounded` says whether q and P are rounded.
  const cpu = dtype === 'bf16' && numerics === 'cpu';
  const rounded = cpu || (numerics === 'cuda-mma' && dtype !== 'fp32');
  const round = dtype === 'fp16' ? toF16 : toBf16;
  const dotQ = cpu ? Float64Array.from(c.q, dotActivation) : rounded ? Float64Array.from(c.q, round) : c.q;
  const dotK = (x: number) => (cpu ? dotInput(x) : x);
  const pvOperand = (x: number) => (cpu ? dotInput(round(x)) : round(x));
  const pvValue = (x: number) => (cpu ? dotInput(x) : x);
  for (let r = 0; r < rows; r++) {
    const slot = c.rowSeq[r];
    const q = c.rowPos[r];
    const seen: number[] = [];
    for (let t = 0; t < c.seqLen[slot]; t++) if (evaluate(pass.visible, { vars: { q, kv: t }, params })) seen.push(t);
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      const qo = (r * heads + h) * D;
      let size = 0; // the largest |score| and scaled sum of |q_d k_d|: what the kernel's f32 score error scales with
      const scores = seen.map((t) => {
        let s = 0;
        let abs = 0;
        for (let d = 0; d < D; d++) {
          const p = dotQ[qo + d] * dotK(c.kCache[at(slot, t, kvh) + d]);
          s += p;
          abs += Math.abs(p);
        }
        s *= plan.scale;
        s = pass.score ? (evaluate(pass.score, { vars: { s, q, kv: t, head: h }, params }) as number) : s;
        size = Math.max(size, abs * plan.scale, Math.abs(s));
        return s;
      });
      if (!seen.length) continue; // nothing visible: 0
      const value = (t: number, d: number) => c.vCache[at(slot, t, kvh) + d];
      if (!rounded) {
        const m = Math.max(...scores);
        const p = scores.map((s) => Math.exp(s - m));
        const l = p.reduce((a, b) => a + b, 0);
        for (let d = 0; d < D; d++) {
          let o = 0;
          seen.forEach((t, i) => (o += p[i] * value(t, d)));
          out[qo + d] = o / l;
        }
        continue;
      }
      // Rounded P: the kernel's weight exp(s - m) is within a relative `eps` of this one (its scores' and
      // exp's f32 error), so it rounds to a value between those of w (1 - eps) and w (1 + eps).
      const eps = 2 ** -19 * (2 + 4 * size);
      const chunks = new Map<number, { m: number; l: number; acc: Float64Array; slack: Float64Array }>();
      for (let i = 0; i < seen.length; ) {
        const page = Math.floor(seen[i] / plan.pageSize);
        let j = i;
        while (j < seen.length && Math.floor(seen[j] / plan.pageSize) === page) j++;
        const key = Math.floor(seen[i] / plan.chunk);
        let st = chunks.get(key);
        if (!st) chunks.set(key, (st = { m: -Infinity, l: 0, acc: new Float64Array(D), slack: new Float64Array(D) }));
        const top = Math.max(...scores.slice(i, j));
        if (top !== -Infinity) {
          const m = Math.max(st.m, top);
          const corr = st.m === -Infinity ? 0 : Math.exp(st.m - m);
          st.l *= corr;
          for (let d = 0; d < D; d++) {
            st.acc[d] *= corr;
            st.slack[d] *= corr;
          }
          for (let k = i; k < j; k++) {
            const w = Math.exp(scores[k] - m);
            st.l += w;
            const spread = pvOperand(w * (1 + eps)) - pvOperand(w * (1 - eps));
            const wr = pvOperand(w);
            for (let d = 0; d < D; d++) {
              const v = pvValue(value(seen[k], d));
              st.acc[d] += wr * v;
              st.slack[d] += spread * Math.abs(v);
            }
          }
          st.m = m;
        }
        i = j;
      }
      const live = [...chunks.values()].filter((st) => st.l > 0);
      if (!live.length) continue;
      const top = Math.max(...live.map((st) => st.m));
      let l = 0;
      for (const st of live) l += st.l * Math.exp(st.m - top);
      for (const st of live) {
        const f = Math.exp(st.m - top) / l;
        for (let d = 0; d < D; d++) {
          out[qo + d] += st.acc[d] * f;
          slack[qo + d] += st.slack[d] * f;
        }
      }
    }
  }
  return { out, slack };
}

/** relError of got against a reference's outputs, once each output's slack is taken off its difference. */
export function attentionError(got: Vec, ref: AttentionReference): number {
  return relError(got, ref.out, ref.slack);
}

/** ||got - want|| / ||want|| (0 when both are 0); with `slack`, each |got - want| less its slack, down to 0. */
export function relError(got: Vec, want: Vec, slack?: Vec): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (slack ? Math.max(0, Math.abs(got[i] - want[i]) - slack[i]) : got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}
