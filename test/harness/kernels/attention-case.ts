// Random attention inputs for a module's pass: a batch of sequences (each decoding one row or verifying
// gamma + 1), random lengths, a randomly permuted page table, runtime params drawn around the spec's
// values, and NaN poison in every cached position that no row of its sequence may see (and in every
// unused page), so a kernel that reads a skipped tile or a masked position produces NaN.
import fc from 'fast-check';
import { kvCacheRow } from '../../../codegen/abi.ts';
import type { ModulePlan, PassPlan } from '../../../codegen/plan.ts';
import { visibleRef, type AttentionCase } from '../../reference/kernels.ts';
import type { Arg } from './driver.ts';
import { store } from './storage.ts';

export interface AttentionDraw {
  readonly seed: number;
  /** Per sequence: its length and whether it verifies gamma + 1 rows (else decodes one row). */
  readonly seqs: readonly { readonly len: number; readonly verify: boolean }[];
  /** Per param of the pass, a fraction in [0, 1] that picks its value (see paramValue). */
  readonly paramPicks: readonly number[];
  /**
   * Per element of q, K and V, the chance of a value in [2^-131, 2^-49), below the coarse bound of the
   * emulated VDPBF16PS (md_cpu.h dot_bf16_coarse), or of a large one in [8, 512) for K (scores far apart,
   * so weights far below it too), and some KV heads' V scaled down to near 2^-126. 0 or absent: none.
   */
  readonly fine?: number;
}

/** a with each element, with chance p, replaced by a fine value (or, with `big`, as often by a large one). */
export function plantFine(rnd: () => number, a: Float64Array | Float32Array, p: number, big = false): void {
  const sign = () => (rnd() < 0.5 ? -1 : 1);
  for (let i = 0; i < a.length; i++) {
    if (rnd() < p) a[i] = sign() * (1 + rnd()) * 2 ** -(49 + Math.floor(rnd() * 83));
    else if (big && rnd() < p) a[i] = sign() * (1 + rnd()) * 2 ** (3 + Math.floor(rnd() * 6));
  }
}

export function attentionDrawArb(plan: ModulePlan, maxSeqs: number, maxLen: number): fc.Arbitrary<AttentionDraw> {
  const seq = fc.record({ len: fc.integer({ min: plan.gamma + 1, max: maxLen }), verify: fc.boolean() });
  return fc.record({
    seed: fc.integer({ min: 1, max: 0x7fffffff }),
    seqs: fc.array(seq, { minLength: 1, maxLength: maxSeqs }),
    paramPicks: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 8, maxLength: 8 }),
  });
}

/** A runtime param's value: i32 in [0, 2 * spec + 8] (0 and beyond-length windows included), f32 in [spec/4, 4 spec]. */
function paramValue(p: PassPlan['params'][number], pick: number): number {
  if (p.ty === 'i32') return Math.floor(pick * (2 * Math.abs(p.value) + 9));
  return Math.fround(Math.abs(p.value) * (0.25 + 3.75 * pick));
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface BuiltAttention {
  readonly rows: number;
  /** Reference inputs (decoded values). */
  readonly ref: AttentionCase;
  /** Driver arguments, except workspace and out. */
  readonly args: Record<string, Arg>;
  /** Fraction of cached positions (of used pages) that are poisoned. */
  readonly poisoned: number;
  /**
   * Rebuild the driver arguments for row r alone; with `ownLength`, its sequence ends at the row (seq_len =
   * position + 1), as when the row is decoded autoregressively rather than verified or prefilled among
   * later positions (only the same for a causal pass).
   */
  rowArgs(r: number, opts?: { ownLength?: boolean }): Record<string, Arg>;
}

export function buildAttention(plan: ModulePlan, pass: PassPlan, d: AttentionDraw): BuiltAttention {
  const rnd = mulberry32(d.seed);
  const { heads, kvHeads, headDim: D } = plan.dims;
  const PS = plan.pageSize;
  const dtype = plan.deployment.dtype;
  const params = pass.params.map((p, i) => paramValue(p, d.paramPicks[i % d.paramPicks.length]));

  // Slots: one per sequence, at shuffled slot ids with one unused slot; pages: a random permutation.
  const nSlots = d.seqs.length + 1;
  const slotOf = shuffle(Array.from({ length: nSlots }, (_, i) => i), rnd).slice(0, d.seqs.length);
  const pagesPerSeq = plan.pagesPerSeq;
  const pageTable = new Int32Array(nSlots * pagesPerSeq).fill(-1);
  const seqLen = new Int32Array(nSlots);
  const needed = d.seqs.map((s) => Math.ceil(s.len / PS));
  const nPages = needed.reduce((a, b) => a + b, 0) + 2;
  const physical = shuffle(Array.from({ length: nPages }, (_, i) => i), rnd);
  let next = 0;
  d.seqs.forEach((s, i) => {
    seqLen[slotOf[i]] = s.len;
    for (let p = 0; p < needed[i]; p++) pageTable[slotOf[i] * pagesPerSeq + p] = physical[next++];
  });

  // Rows: decode rows at len - 1, verification rows at len - gamma - 1 .. len - 1.
  const rowSeq: number[] = [];
  const rowPos: number[] = [];
  d.seqs.forEach((s, i) => {
    const n = s.verify ? plan.gamma + 1 : 1;
    for (let k = 0; k < n; k++) {
      rowSeq.push(slotOf[i]);
      rowPos.push(s.len - n + k);
    }
  });
  const rows = rowSeq.length;

  const elems = nPages * PS * kvHeads * D;
  const raw = (scale: number) => Float64Array.from({ length: elems }, () => (2 * rnd() - 1) * scale);
  const kRaw = raw(1.5);
  const vRaw = raw(1);
  if (d.fine) {
    plantFine(rnd, kRaw, d.fine, true);
    plantFine(rnd, vRaw, d.fine);
    // Some KV heads' V at 2^-116 .. 2^-129 of its scale, partly subnormal, so that P.V's inputs and partial
    // sums sit about 2^-126, where a missed flush shows in the output.
    for (let kvh = 0; kvh < kvHeads; kvh++) {
      if (rnd() < 0.5) continue;
      const f = 2 ** -(116 + Math.floor(rnd() * 14));
      for (let pos = 0; pos < nPages * PS; pos++) {
        const at = kvCacheRow({ kvHeads, headDim: D, pageSize: PS }, Math.floor(pos / PS), pos % PS, kvh);
        for (let e = at; e < at + D; e++) vRaw[e] *= f;
      }
    }
  }
  // Poison what no row of the slot may see (positions past seq_len in a last page included).
  let used = 0;
  let poisoned = 0;
  const seen = new Uint8Array(nPages * PS);
  for (let r = 0; r < rows; r++)
    for (let t = 0; t < seqLen[rowSeq[r]]; t++)
      if (visibleRef(pass, params, rowPos[r], t)) seen[pageTable[rowSeq[r] * pagesPerSeq + Math.floor(t / PS)] * PS + (t % PS)] = 1;
  d.seqs.forEach((_, i) => (used += needed[i] * PS));
  for (let pos = 0; pos < nPages * PS; pos++) {
    if (seen[pos]) continue;
    poisoned++;
    for (let kvh = 0; kvh < kvHeads; kvh++) {
      const at = kvCacheRow({ kvHeads, headDim: D, pageSize: PS }, Math.floor(pos / PS), pos % PS, kvh);
      for (let e = at; e < at + D; e++) kRaw[e] = vRaw[e] = NaN;
    }
  }
  const k = store(dtype, kRaw);
  const v = store(dtype, vRaw);
  const q = Float32Array.from({ length: rows * heads * D }, () => (2 * rnd() - 1) * 3);
  if (d.fine) plantFine(rnd, q, d.fine);
  const paramArr = Float32Array.from(params.length ? params : [0]);

  const argsFor = (sel: number[]): Record<string, Arg> => ({
    q: Float32Array.from(sel.flatMap((r) => Array.from(q.subarray(r * heads * D, (r + 1) * heads * D)))),
    k_cache: k.bytes,
    v_cache: v.bytes,
    page_table: pageTable,
    pages_per_seq: pagesPerSeq,
    row_seq: Int32Array.from(sel.map((r) => rowSeq[r])),
    row_pos: Int32Array.from(sel.map((r) => rowPos[r])),
    seq_len: seqLen,
    rows: sel.length,
    params: paramArr,
  });
  return {
    rows,
    ref: { q, kCache: k.values, vCache: v.values, pageTable, pagesPerSeq, rowSeq, rowPos, seqLen, params },
    args: argsFor(Array.from({ length: rows }, (_, r) => r)),
    poisoned: (poisoned - 2 * PS) / used, // the two spare pages are all poison
    rowArgs: (r, opts) => {
      const args = argsFor([r]);
      if (!opts?.ownLength) return args;
      const own = Int32Array.from(seqLen);
      own[rowSeq[r]] = rowPos[r] + 1;
      return { ...args, seq_len: own };
    },
  };
}

function shuffle<T>(xs: T[], rnd: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

/**
 * A case's V cache (2-byte storage) with element e of the row at position `pos` of row 0's sequence, KV
 * head kvh, set to the raw bits `bits` (an inf or NaN): the arguments to pass instead of c.args.v_cache.
 */
export function withValueBits(plan: ModulePlan, c: BuiltAttention, pos: number, kvh: number, e: number, bits: number): Uint8Array {
  const { kvHeads, headDim } = plan.dims;
  const slot = (c.ref.rowSeq as readonly number[])[0];
  const page = (c.ref.pageTable as Int32Array)[slot * plan.pagesPerSeq + Math.floor(pos / plan.pageSize)];
  const v = new Uint16Array((c.args.v_cache as Uint8Array).slice().buffer);
  v[kvCacheRow({ kvHeads, headDim, pageSize: plan.pageSize }, page, pos % plan.pageSize, kvh) + e] = bits;
  return new Uint8Array(v.buffer);
}
