// md_lm_head_argmax_b<B> on the CPU backend, on every kernel test module plus one with an odd vocabulary
// and a K that is not a multiple of the lane width (tail blocks on both axes):
// - logits are bit-identical to md_gemm_lm_head (bias NULL) and close to the float64 reference;
// - tokens equal md_argmax on those logits and the reference argmax, also with exact ties (duplicated
//   weight rows, zero logits on top), NaN columns and all-NaN rows;
// - a row's logits and token do not depend on the rows around it, the bucket or the thread count;
// - with logits NULL only tokens are written, and they are the same;
// - outputs start as NaN / -1 poison (driver), so anything left unwritten shows.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argmaxRef, cpuGemmInputs, gemmRef, relError } from '../reference/kernels.ts';
import { mulberry32 } from '../harness/kernels/attention-case.ts';
import { KERNEL_DEPLOYMENTS } from '../harness/kernels/deployments.ts';
import { f32, i32 } from '../harness/kernels/driver.ts';
import { openModule, useModules, type ModuleUnderTest } from '../harness/kernels/module.ts';
import { store, storageBytes } from '../harness/kernels/storage.ts';
import { makeDeployment, modelConfig } from '../support/deployments.ts';

const DEPLOYMENTS = {
  ...KERNEL_DEPLOYMENTS,
  /** vocab 1001 (a partial last column block), hidden 40 (a lane tail in K), bf16, three buckets. */
  oddVocabBf16: makeDeployment({
    model: modelConfig({ numHeads: 2, numKvHeads: 1, headDim: 20, vocabSize: 1001, name: 'odd-vocab' }),
    batch: [1, 2, 5],
    gamma: 2,
    maxSeq: 128,
    pageSize: 8,
    dtype: 'bf16',
  }),
};
type Name = keyof typeof DEPLOYMENTS;
const NAMES = Object.keys(DEPLOYMENTS) as Name[];
const modules = useModules(DEPLOYMENTS);

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.slice().buffer));
const maxRows = (m: ModuleUnderTest, b: number) => b * (m.plan.gamma + 1);

interface Case {
  x: Float32Array;
  w: ReturnType<typeof store>;
  rows: number;
}

/**
 * Random x [rows, hidden] and LM head [vocab, hidden] with the hard cases of argmax built in: some weight
 * rows copied to higher indices (exact ties of equal logits), NaN in some weight rows (NaN columns), an
 * all-negative x row against positive weights except two zero rows (a tie of zero logits at the top, all
 * else negative), and an all-NaN x row.
 */
function drawCase(m: ModuleUnderTest, seed: number, rows: number): Case {
  const rnd = mulberry32(seed);
  const { hidden: H, vocab: V } = m.plan.dims;
  const x = Float32Array.from({ length: rows * H }, () => (2 * rnd() - 1) * 2);
  const wv = Float32Array.from({ length: V * H }, () => (2 * rnd() - 1) * 0.5);
  const row = (n: number) => wv.subarray(n * H, (n + 1) * H);
  for (let c = 0; c < 1 + Math.floor(rnd() * 6); c++) {
    const from = Math.floor(rnd() * V);
    const to = from + Math.floor(rnd() * (V - from));
    row(to).set(row(from).slice());
  }
  if (rnd() < 0.5) for (let c = 0; c < 3; c++) row(Math.floor(rnd() * V))[Math.floor(rnd() * H)] = NaN;
  if (rows >= 2 && rnd() < 0.6) {
    const r = Math.floor(rnd() * rows);
    const zero = Math.floor(rnd() * (V - 1));
    const zero2 = zero + 1 + Math.floor(rnd() * (V - zero - 1));
    x.subarray(r * H, (r + 1) * H).forEach((_, i, a) => (a[i] = -0.25 - rnd()));
    for (let n = 0; n < V; n++) row(n).forEach((v, i, a) => (a[i] = Number.isNaN(v) ? v : Math.abs(v) + 2 ** -6));
    row(zero).fill(0); // x < 0 times +0 is -0, but the sum starts at +0: the logit is +0
    row(zero2).fill(-0);
  }
  if (rnd() < 0.3) x.fill(NaN, (rows - 1) * H, rows * H);
  return { x, w: store(m.plan.deployment.dtype, wv), rows };
}

describe.each(NAMES)('md_lm_head_argmax, module %s', (name) => {
  const mod = () => modules.get(name)!;
  const buckets = () => mod().plan.buckets;
  const large = () => Math.max(...buckets());
  const small = () => Math.min(...buckets());

  it('logits are md_gemm_lm_head bit for bit, close to float64; tokens are md_argmax of them', async () => {
    const m = mod();
    const { hidden: H, vocab: V } = m.plan.dims;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 0x7fffffff }), fc.integer({ min: 1, max: maxRows(m, large()) }), async (seed, rows) => {
        const { x, w } = drawCase(m, seed, rows);
        const fused = await m.driver.call(`md_lm_head_argmax_b${large()}`, { x, w: w.bytes, logits: { out: rows * V * 4 }, tokens: { out: rows * 4 }, rows }, 2);
        expect(fused.status).toBe(0);
        const gemm = await m.driver.call(`md_gemm_lm_head_b${large()}`, { x, w: w.bytes, bias: null, y: { out: rows * V * 4 }, rows }, 2);
        expect(gemm.status).toBe(0);
        const logits = f32(fused.out.logits);
        expect(bits(logits)).toEqual(bits(f32(gemm.out.y)));
        const argmax = await m.driver.call('md_argmax', { logits, tokens: { out: rows * 4 }, rows }, 3);
        const tokens = Array.from(i32(fused.out.tokens));
        expect(tokens).toEqual(Array.from(i32(argmax.out.tokens)));
        expect(tokens).toEqual(Array.from(argmaxRef(logits, rows, V)));
        // Sums start at +0, and +0 + -0 = +0: a logit is never -0 (md_argmax_key's -0 rule is defensive).
        expect(logits.some((v) => Object.is(v, -0))).toBe(false);
        // Rows without NaN inputs: every logit written and within float32 accumulation error of float64.
        const ref = gemmRef(...cpuGemmInputs(m.plan.deployment.dtype, x, w.values), undefined, rows, V, H);
        for (let r = 0; r < rows; r++) {
          const out = logits.subarray(r * V, (r + 1) * V);
          const want = ref.subarray(r * V, (r + 1) * V);
          const clean = want.map((v) => (Number.isNaN(v) ? 0 : v));
          const got = out.map((v, n) => (Number.isNaN(want[n]) ? 0 : v));
          expect(got.every(Number.isFinite), `row ${r}`).toBe(true);
          expect(relError(got, clean), `row ${r}`).toBeLessThan(1e-5);
        }
      }),
      { numRuns: 12 },
    );
  });

  it('is row-invariant: a row alone, in another bucket, at 1 or 3 threads, with logits NULL gives the same bits', async () => {
    const m = mod();
    const V = m.plan.dims.vocab;
    const H = m.plan.dims.hidden;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 0x7fffffff }), fc.integer({ min: 1, max: maxRows(m, large()) }), async (seed, rows) => {
        const { x, w } = drawCase(m, seed, rows);
        const all = await m.driver.call(`md_lm_head_argmax_b${large()}`, { x, w: w.bytes, logits: { out: rows * V * 4 }, tokens: { out: rows * 4 }, rows }, 2);
        const logits = f32(all.out.logits);
        const tokens = Array.from(i32(all.out.tokens));
        const holding = buckets().filter((b) => maxRows(m, b) >= rows);
        for (const b of holding) {
          for (const threads of [1, 3]) {
            const other = await m.driver.call(`md_lm_head_argmax_b${b}`, { x, w: w.bytes, logits: { out: rows * V * 4 }, tokens: { out: rows * 4 }, rows }, threads);
            expect(other.status).toBe(0);
            expect(bits(f32(other.out.logits)), `bucket ${b}, ${threads} threads`).toEqual(bits(logits));
            expect(Array.from(i32(other.out.tokens)), `bucket ${b}, ${threads} threads`).toEqual(tokens);
          }
          const noLogits = await m.driver.call(`md_lm_head_argmax_b${b}`, { x, w: w.bytes, logits: null, tokens: { out: rows * 4 }, rows }, 2);
          expect(noLogits.status).toBe(0);
          expect(Object.keys(noLogits.out)).toEqual(['tokens']);
          expect(Array.from(i32(noLogits.out.tokens)), `bucket ${b}, logits NULL`).toEqual(tokens);
        }
        for (let r = 0; r < rows; r++) {
          const xr = x.slice(r * H, (r + 1) * H);
          const alone = await m.driver.call(`md_lm_head_argmax_b${small()}`, { x: xr, w: w.bytes, logits: { out: V * 4 }, tokens: { out: 4 }, rows: 1 }, 1 + (r % 3));
          expect(bits(f32(alone.out.logits)), `row ${r} of ${rows}`).toEqual(bits(logits.slice(r * V, (r + 1) * V)));
          expect(i32(alone.out.tokens)[0], `row ${r} of ${rows}`).toBe(tokens[r]);
        }
      }),
      { numRuns: 6 },
    );
  });

  it('rejects bad arguments without writing: too many rows, negative rows, NULL tokens, x or w; 0 rows is a no-op', async () => {
    const m = mod();
    const { hidden: H, vocab: V } = m.plan.dims;
    const w = new Uint8Array(V * H * storageBytes(m.plan.deployment.dtype));
    const sym = `md_lm_head_argmax_b${small()}`;
    const over = maxRows(m, small()) + 1;
    const tooMany = await m.driver.call(sym, { x: new Float32Array(over * H), w, logits: { out: over * V * 4 }, tokens: { out: over * 4 }, rows: over });
    expect(tooMany.status).toBe(1);
    expect(f32(tooMany.out.logits).every(Number.isNaN)).toBe(true);
    expect(Array.from(i32(tooMany.out.tokens)).every((t) => t === -1)).toBe(true);
    const args = { x: new Float32Array(H), w, logits: { out: V * 4 }, tokens: { out: 4 }, rows: 1 };
    for (const bad of [{ rows: -1 }, { tokens: null }, { x: null }, { w: null }]) {
      const res = await m.driver.call(sym, { ...args, ...bad });
      expect(res.status, JSON.stringify(bad)).toBe(1);
      expect(f32(res.out.logits).every(Number.isNaN)).toBe(true);
      if (res.out.tokens) expect(i32(res.out.tokens)[0]).toBe(-1);
    }
    const none = await m.driver.call(sym, { x: null, w: null, logits: null, tokens: null, rows: 0 });
    expect(none.status).toBe(0);
  });
});

// A bucket's row bound can be thousands of rows (bucket * (gamma + 1)): the per-thread argmax keys must not
// scale the stack with it. OpenMP workers get a 64 KiB stack here, which per-thread key arrays of the row
// bound (8 bytes * 16384 rows = 128 KiB) overflow; keys sized by `rows` on the heap fit any stack.
describe('md_lm_head_argmax with a large bucket on small OpenMP stacks', () => {
  const wide = makeDeployment({
    model: modelConfig({ numHeads: 2, numKvHeads: 1, headDim: 16, vocabSize: 300, name: 'wide-bucket' }),
    batch: [1, 2048],
    gamma: 7,
    maxSeq: 64,
    pageSize: 8,
    dtype: 'fp32',
  });
  let m: ModuleUnderTest;
  beforeAll(async () => {
    m = await openModule(wide, { OMP_STACKSIZE: '64K' });
  }, 600_000);
  afterAll(() => m?.driver.close());

  it('gives md_gemm_lm_head + md_argmax at every thread count, for few and for many rows', async () => {
    const V = m.plan.dims.vocab;
    expect(maxRows(m, 2048)).toBe(16384);
    for (const rows of [3, 700]) {
      const { x, w } = drawCase(m, 1000 + rows, rows);
      const gemm = await m.driver.call('md_gemm_lm_head_b2048', { x, w: w.bytes, bias: null, y: { out: rows * V * 4 }, rows }, 1);
      expect(gemm.status).toBe(0);
      const want = await m.driver.call('md_argmax', { logits: f32(gemm.out.y), tokens: { out: rows * 4 }, rows }, 1);
      for (const threads of [1, 2, 4]) {
        const got = await m.driver.call('md_lm_head_argmax_b2048', { x, w: w.bytes, logits: { out: rows * V * 4 }, tokens: { out: rows * 4 }, rows }, threads);
        expect(got.status, `${rows} rows, ${threads} threads`).toBe(0);
        expect(bits(f32(got.out.logits)), `${rows} rows, ${threads} threads`).toEqual(bits(f32(gemm.out.y)));
        expect(Array.from(i32(got.out.tokens)), `${rows} rows, ${threads} threads`).toEqual(Array.from(i32(want.out.tokens)));
      }
    }
  });
});
