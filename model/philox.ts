// Philox4x32-10, the counter-based generator of Random123 (Salmon, Moraes, Dror and Shaw, "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011), and the noise magicdec's samplers draw from it: the TypeScript
// reference of templates/common/md_philox.h, bit for bit (test/kernels/philox.test.ts holds both to the
// paper's known-answer vectors and to each other).
//
// Sampling noise is a pure function of (request seed, absolute position, stream, draw index)
// (docs/ARCHITECTURE.md, invariant 3): draw `d` of (seed, position, stream) is word d % 4 of
// Philox4x32-10 at counter (d / 4, position, stream, 0) under key (seed low 32 bits, seed high 32 bits).
// No state is carried from one draw to the next, so a position's noise is the same whether it is decoded
// alone, verified among drafted tokens or in any batch.

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** What a draw is for (counter word 2): each sampler's noise is its own stream. */
export const NOISE_STREAM = {
  /** Gumbel noise of the token with index `draw` (sample-and-match, the target's and the draft's samples). */
  gumbel: 0,
  /** The uniform of an acceptance test. */
  accept: 1,
  /** Gumbel noise for resampling from a residual distribution. */
  residual: 2,
} as const;

/** High 32 bits of the 64-bit product of two uint32s (exact: 16-bit limbs keep every partial below 2^53). */
function mulhi(a: number, b: number): number {
  const t = (a & 0xffff) * b;
  const u = (a >>> 16) * b + Math.floor(t / 65536);
  return Math.floor(u / 65536) >>> 0;
}

/** Philox4x32-10 of `counter` (4 uint32) under `key` (2 uint32): 4 uint32. */
export function philox4x32_10(counter: readonly number[], key: readonly number[]): [number, number, number, number] {
  if (counter.length !== 4 || key.length !== 2) throw new Error('philox4x32_10: a counter has 4 words and a key 2');
  let [c0, c1, c2, c3] = counter.map((x) => x >>> 0);
  let [k0, k1] = key.map((x) => x >>> 0);
  for (let i = 0; i < 10; i++) {
    if (i > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}

/** A seed as the two key words (low, high); a seed is an integer in [0, 2^64). */
export function seedKey(seed: number | bigint): [number, number] {
  const s = typeof seed === 'bigint' ? seed : BigInt(seed);
  if (typeof seed === 'number' && !Number.isSafeInteger(seed)) throw new Error(`seed ${seed} is not a safe integer`);
  if (s < 0n || s >= 1n << 64n) throw new Error(`seed ${seed} is outside [0, 2^64)`);
  return [Number(s & 0xffffffffn), Number(s >> 32n)];
}

/** The 4 words of block `block` of (seed, position, stream): draws 4 * block .. 4 * block + 3. */
export function philoxBlock(seed: number | bigint, position: number, stream: number, block: number): [number, number, number, number] {
  return philox4x32_10([block >>> 0, position >>> 0, stream >>> 0, 0], seedKey(seed));
}

/** Draw `draw` of (seed, position, stream), a uint32. */
export function philoxDraw(seed: number | bigint, position: number, stream: number, draw: number): number {
  return philoxBlock(seed, position, stream, Math.floor(draw / 4))[draw % 4];
}

const TWO_M24 = 2 ** -24;

/** A uint32 as a float in [0, 1): its top 24 bits times 2^-24 (exact in float32). */
export function uniform01(bits: number): number {
  return (bits >>> 8) * TWO_M24;
}

/**
 * A uint32 as a float in the open interval (0, 1): (2 * (top 23 bits) + 1) * 2^-24, exact in float32, never
 * 0 or 1 (2^-24 .. 1 - 2^-24), so log(u) and log(-log(u)) are finite: the form Gumbel noise takes
 * (model/sampling.ts).
 */
export function uniformOpen01(bits: number): number {
  return ((bits >>> 9) * 2 + 1) * TWO_M24;
}
