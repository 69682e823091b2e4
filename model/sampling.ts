// The TypeScript reference of magicdec's sampler (md_sample: templates/cpu/sample.cpp.hbs, the definition in
// docs/ABI.md, "Sampling"): the same double arithmetic as templates/common/md_sampling.h — fdlibm's exp and
// log ported operation for operation, so the reference, the CPU kernel and the CUDA kernel's per-element
// steps compute the same bits — and the same filters and Gumbel-max draw, so a test can demand the kernel's
// exact tokens.
import { NOISE_STREAM, philoxBlock, philoxDraw, uniformOpen01 } from './philox.ts';

const f64 = new Float64Array(1);
const w32 = new Uint32Array(f64.buffer); // little-endian: w32[0] low word, w32[1] high word

function hiWord(x: number): number {
  f64[0] = x;
  return w32[1];
}
function loWord(x: number): number {
  f64[0] = x;
  return w32[0];
}
function withHi(x: number, hi: number): number {
  f64[0] = x;
  w32[1] = hi >>> 0;
  return f64[0];
}

/** e^x: fdlibm's __ieee754_exp, as md_exp_f64 (templates/common/md_sampling.h). */
export function expF64(x: number): number {
  const ln2hi = 6.9314718036912381649e-1;
  const ln2lo = 1.90821492927058770002e-10;
  const invln2 = 1.442695040888963387;
  const P1 = 1.66666666666666019037e-1;
  const P2 = -2.77777777770155933842e-3;
  const P3 = 6.61375632143793436117e-5;
  const P4 = -1.6533902205465251539e-6;
  const P5 = 4.13813679705723846039e-8;
  let hx = hiWord(x);
  const xsb = hx >>> 31;
  hx = (hx & 0x7fffffff) >>> 0;
  if (hx >= 0x40862e42) {
    if (hx >= 0x7ff00000) {
      if (((hx & 0xfffff) | loWord(x)) !== 0) return x + x;
      return xsb === 0 ? x : 0;
    }
    if (x > 7.09782712893383973096e2) return Infinity;
    if (x < -7.4513321910194110842e2) return 0;
  }
  let hi = 0;
  let lo = 0;
  let k = 0;
  if (hx > 0x3fd62e42) {
    if (hx < 0x3ff0a2b2) {
      hi = xsb ? x + ln2hi : x - ln2hi;
      lo = xsb ? -ln2lo : ln2lo;
      k = 1 - xsb - xsb;
    } else {
      k = Math.trunc(invln2 * x + (xsb ? -0.5 : 0.5));
      hi = x - k * ln2hi;
      lo = k * ln2lo;
    }
    x = hi - lo;
  } else if (hx < 0x3e300000) {
    return 1 + x;
  }
  const t = x * x;
  const c = x - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
  if (k === 0) return 1 - ((x * c) / (c - 2) - x);
  const y = 1 - (lo - (x * c) / (2 - c) - hi);
  const yhi = hiWord(y);
  if (k >= -1021) return withHi(y, yhi + k * 2 ** 20);
  return withHi(y, yhi + (k + 1000) * 2 ** 20) * 9.33263618503218878990e-302;
}

/** log(x): fdlibm's __ieee754_log, as md_log_f64 (templates/common/md_sampling.h). */
export function logF64(x: number): number {
  const ln2_hi = 6.9314718036912381649e-1;
  const ln2_lo = 1.90821492927058770002e-10;
  const Lg1 = 6.66666666666673513e-1;
  const Lg2 = 3.999999999940941908e-1;
  const Lg3 = 2.857142874366239149e-1;
  const Lg4 = 2.222219843214978396e-1;
  const Lg5 = 1.818357216161805012e-1;
  const Lg6 = 1.531383769920937332e-1;
  const Lg7 = 1.479819860511658591e-1;
  let hx = hiWord(x) | 0;
  const lx = loWord(x);
  let k = 0;
  if (hx < 0x00100000) {
    if (((hx & 0x7fffffff) | lx) === 0) return -Infinity;
    if (hx < 0) return NaN;
    k -= 54;
    x *= 1.8014398509481984e16;
    hx = hiWord(x) | 0;
  }
  if (hx >= 0x7ff00000) return x + x;
  k += (hx >> 20) - 1023;
  hx &= 0x000fffff;
  const i = (hx + 0x95f64) & 0x100000;
  x = withHi(x, hx | (i ^ 0x3ff00000));
  k += i >> 20;
  const f = x - 1;
  const dk = k;
  if ((0x000fffff & (2 + hx)) < 3) {
    if (f === 0) return k === 0 ? 0 : dk * ln2_hi + dk * ln2_lo;
    const R = f * f * (0.5 - 0.33333333333333333 * f);
    if (k === 0) return f - R;
    return dk * ln2_hi - (R - dk * ln2_lo - f);
  }
  const s = f / (2 + f);
  const z = s * s;
  const w = z * z;
  const ij = (hx - 0x6147a) | (0x6b851 - hx);
  const t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
  const t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
  const R = t2 + t1;
  if (ij > 0) {
    const hfsq = 0.5 * f * f;
    if (k === 0) return f - (hfsq - s * (hfsq + R));
    return dk * ln2_hi - (hfsq - (s * (hfsq + R) + dk * ln2_lo) - f);
  }
  if (k === 0) return f - s * (f - R);
  return dk * ln2_hi - (s * (f - R) - dk * ln2_lo - f);
}

/** Standard Gumbel noise of a uint32: -log(-log(u)) of its open uniform, as md_gumbel. */
export function gumbel(bits: number): number {
  return -logF64(-logF64(uniformOpen01(bits)));
}

/** A row's sampling parameters, as md_sample reads them (float32 / int32; docs/ABI.md, "Sampling"). */
export interface SamplingParams {
  /** 0: greedy (md_argmax); otherwise > 0, the logits are divided by it. */
  readonly temperature: number;
  /** Keep the k highest-ranked tokens; 0 keeps all. */
  readonly topK: number;
  /** In (0, 1]: keep the smallest top-ranked set whose weight reaches topP of the whole; 1 keeps all. */
  readonly topP: number;
  /** In [0, 1]: keep tokens whose weight is at least minP times the top token's; 0 keeps all. */
  readonly minP: number;
}

export const GREEDY: SamplingParams = { temperature: 0, topK: 0, topP: 1, minP: 0 };

/** md_argmax's order on (value, index): larger value first, then lower index; -0 ranks as +0. */
function ranksBefore(l: ArrayLike<number>, a: number, b: number): boolean {
  return l[a] > l[b] || (l[a] === l[b] && a < b);
}

/** md_argmax of a row: the lowest index of the largest value, NaN never winning; 0 for a row of NaNs. */
export function argmaxRow(l: ArrayLike<number>): number {
  let best = -1;
  for (let i = 0; i < l.length; i++) if (!Number.isNaN(l[i]) && (best < 0 || ranksBefore(l, i, best))) best = i;
  return Math.max(best, 0);
}

/** What md_sample keeps of a row before the draw: the candidates, with z = logit / T and e = exp(z - max z). */
export interface Filtered {
  /** Kept token indices, ascending. */
  readonly kept: number[];
  readonly z: Float64Array;
  readonly e: Float64Array;
}

/**
 * The filters of md_sample for a row with temperature > 0 and a finite maximum: top-k, then top-p, then
 * min-p, each over what the previous one kept (docs/ABI.md, "Sampling").
 */
export function filterRow(l: ArrayLike<number>, params: SamplingParams): Filtered {
  const T = Math.fround(params.temperature);
  const topP = Math.fround(params.topP);
  const minP = Math.fround(params.minP);
  const V = l.length;
  const b = argmaxRow(l);
  const z = new Float64Array(V);
  const e = new Float64Array(V);
  const m = Math.fround(l[b]) / T;
  let ranked: number[] = [];
  for (let i = 0; i < V; i++) {
    if (Number.isNaN(l[i])) continue;
    z[i] = Math.fround(l[i]) / T;
    e[i] = expF64(z[i] - m);
    ranked.push(i);
  }
  ranked.sort((x, y) => (ranksBefore(l, x, y) ? -1 : 1));
  if (params.topK > 0 && params.topK < ranked.length) ranked = ranked.slice(0, params.topK);
  if (topP < 1) {
    let total = 0;
    for (const i of ranked) total += e[i];
    const target = topP * total;
    let cum = 0;
    let cut = ranked.length;
    for (let j = 0; j < ranked.length; j++) {
      cum += e[ranked[j]];
      if (cum >= target) {
        cut = j + 1;
        break;
      }
    }
    ranked = ranked.slice(0, cut);
  }
  if (minP > 0) ranked = ranked.filter((i) => e[i] >= minP);
  return { kept: ranked.sort((x, y) => x - y), z, e };
}

/** The distribution md_sample draws from: kept tokens with probability e / sum e (float64). */
export function samplingDistribution(l: ArrayLike<number>, params: SamplingParams): Map<number, number> {
  if (Math.fround(params.temperature) === 0 || !Number.isFinite(l[argmaxRow(l)])) return new Map([[argmaxRow(l), 1]]);
  const { kept, e } = filterRow(l, params);
  const total = kept.reduce((s, i) => s + e[i], 0);
  return new Map(kept.map((i) => [i, e[i] / total]));
}

/** md_sample of one row: the token at `position` of a request with `seed` (a 64-bit integer). */
export function sampleRow(l: ArrayLike<number>, params: SamplingParams, seed: number | bigint, position: number): number {
  const b = argmaxRow(l);
  if (Math.fround(params.temperature) === 0 || !Number.isFinite(l[b])) return b;
  const { kept, z } = filterRow(l, params);
  let best = -1;
  let bestScore = -Infinity;
  let block = -1;
  let words: number[] = [];
  for (const i of kept) {
    if (i >> 2 !== block) {
      block = i >> 2;
      words = philoxBlock(seed, position, NOISE_STREAM.gumbel, block);
    }
    const s = z[i] + gumbel(words[i & 3]);
    if (best < 0 || s > bestScore) {
      best = i;
      bestScore = s;
    }
  }
  return best;
}

/**
 * The distribution md_sample draws a row from, dense: e_i over the kept tokens' sum (summed in index order),
 * 0 elsewhere; one-hot on the argmax for a greedy row. As md_verify_sample's p and q.
 */
export function rowDistribution(l: ArrayLike<number>, params: SamplingParams): Float64Array {
  const prob = new Float64Array(l.length);
  const b = argmaxRow(l);
  if (Math.fround(params.temperature) === 0 || !Number.isFinite(l[b])) {
    prob[b] = 1;
    return prob;
  }
  const { kept, e } = filterRow(l, params);
  for (const i of kept) prob[i] = e[i];
  let total = 0;
  for (let i = 0; i < l.length; i++) total += prob[i];
  for (let i = 0; i < l.length; i++) prob[i] /= total;
  return prob;
}

/** A Gumbel-max draw proportional to positive finite weights, from the residual stream at `position`; -1 if none. */
function drawWeighted(V: number, seed: number | bigint, position: number, w: (i: number) => number): number {
  let best = -1;
  let bestScore = 0;
  for (let block = 0; block * 4 < V; block++) {
    const words = philoxBlock(seed, position, NOISE_STREAM.residual, block);
    for (let j = 0; j < 4 && block * 4 + j < V; j++) {
      const i = block * 4 + j;
      const x = w(i);
      if (!(x > 0 && Number.isFinite(x))) continue;
      const s = logF64(x) + gumbel(words[j]);
      if (best < 0 || s > bestScore) {
        best = i;
        bestScore = s;
      }
    }
  }
  return best;
}

/**
 * The entropy (nats) of a distribution, as md_verify_sample computes the `h` its rule may read: -p_i log p_i
 * over the positive p_i, summed in index order in float64 (logF64).
 */
export function entropy(prob: ArrayLike<number>): number {
  let h = 0;
  for (let i = 0; i < prob.length; i++) if (prob[i] > 0) h -= prob[i] * logF64(prob[i]);
  return h;
}

/** A verifier's rule in f32, as md_verify_sample calls it (e.g. the IR interpreter over plan.verifierRule). */
export interface VerifierRule {
  accept(p: number, q: number, u: number, h: number): boolean;

  residual(p: number, q: number): number;
}

/**
 * md_verify_sample for one sequence: the target's gamma + 1 rows, the draft's gamma rows and its drafted
 * tokens, the request's parameters and seed, and the position of the first verified row.
 */
export function verifySample(
  target: readonly ArrayLike<number>[],
  draft: readonly ArrayLike<number>[],
  tokens: readonly number[],
  params: SamplingParams,
  seed: number | bigint,
  position: number,
  rule: VerifierRule,
): { accepted: number; next: number } {
  const gamma = tokens.length;
  const V = target[0].length;
  for (let a = 0; a < gamma; a++) {
    const pos = position + a;
    const p = rowDistribution(target[a], params);
    const q = rowDistribution(draft[a], params);
    const x = tokens[a];
    const u = uniformOpen01(philoxDraw(seed, pos, NOISE_STREAM.accept, 0));
    if (rule.accept(Math.fround(p[x]), Math.fround(q[x]), u, Math.fround(entropy(p)))) continue;
    let next = drawWeighted(V, seed, pos, (i) => rule.residual(Math.fround(p[i]), Math.fround(q[i])));
    if (next < 0) next = drawWeighted(V, seed, pos, (i) => p[i]);
    return { accepted: a, next };
  }
  return { accepted: gamma, next: sampleRow(target[gamma], params, seed, position + gamma) };
}
