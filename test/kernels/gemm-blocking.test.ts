// The CPU GEMM computes every output in one documented order (test/reference/gemm-order.ts) whichever of
// its blocking paths runs: up to 6 rows straight from the stored weights, more rows in several row blocks,
// (fp16) more than 12 rows through widened weight panels, several panels per thread, several row groups,
// and K in chunks whose accumulators wait in a state buffer (K > 512). The module's shapes reach all of
// them: gate_up is [2300, 96] (several panels), down [96, 2300] (K chunks, a lane tail, and row groups of
// at most 108 rows), rows up to 128. bf16 weights take the VDPBF16PS order on x rounded to bf16, fp16 and
// fp32 the f32 order. Each call is compared bit for bit with the emulated order, and one row of it with
// that row computed alone (smallest bucket, one thread). The bf16 order is that of a build with MD_NO_AMX
// (VDPBF16PS), also built with MD_PORTABLE (plain lane loops instead of AVX-512 or AVX2), MD_NO_AVX512 (the
// AVX2 path) and MD_NO_AVX512BF16 (VDPBF16PS emulated), which must give the same bits; some draws plant
// values below the emulation's coarse bound (plantFine), where its fast path must give way to every flush. Where the host has AMX, the native bf16 build runs
// its GEMMs on AMX tiles, whose accumulation is the hardware's own: it is held to the float64 reference
// and to a row alone giving the row's bits, on the same draws.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuBackend } from '../../codegen/backends/cpu.ts';
import { buildModule } from '../../codegen/build.ts';
import { planModule } from '../../codegen/plan.ts';
import { gemmOrderRef } from '../reference/gemm-order.ts';
import { cpuGemmInputs, gemmRef, relError } from '../reference/kernels.ts';
import { mulberry32, plantFine } from '../harness/kernels/attention-case.ts';
import { f32, KernelDriver } from '../harness/kernels/driver.ts';
import { useModules } from '../harness/kernels/module.ts';
import { store } from '../harness/kernels/storage.ts';
import { makeDeployment, modelConfig } from '../support/deployments.ts';

const model = modelConfig({ numHeads: 2, numKvHeads: 1, headDim: 48, hiddenSize: 96, intermediateSize: 2300, vocabSize: 700, name: 'gemm-blocking' });
const shapes = { model, batch: [1, 32], gamma: 3, maxSeq: 64, pageSize: 16 };
const DEPLOYMENTS = {
  bf16: makeDeployment({ ...shapes, dtype: 'bf16' }),
  fp16: makeDeployment({ ...shapes, dtype: 'fp16' }),
  fp32: makeDeployment({ ...shapes, dtype: 'fp32' }),
};
type Name = keyof typeof DEPLOYMENTS;
const modules = useModules(DEPLOYMENTS);
/** The bf16 module built with each fallback macro. */
const fallbacks = new Map<string, KernelDriver>();
beforeAll(async () => {
  const plan = planModule(DEPLOYMENTS.bf16);
  for (const macro of ['MD_NO_AMX', 'MD_PORTABLE', 'MD_NO_AVX512', 'MD_NO_AVX512BF16']) {
    const files = cpuBackend.emit(plan).map((f) => (f.path === 'md_cpu.h' ? { ...f, contents: `#define ${macro} 1\n${f.contents}` } : f));
    fallbacks.set(macro, KernelDriver.open((await buildModule({ name: `${plan.name}.${macro}`, files, target: 'cpu' })).library));
  }
}, 600_000);
afterAll(() => fallbacks.forEach((d) => d.close()));

const bits = (a: Float32Array) => new Uint32Array(a.slice().buffer);
const rand = (rnd: () => number, n: number, scale: number) => Float32Array.from({ length: n }, () => (2 * rnd() - 1) * scale);
/** Row counts at and around every blocking boundary, and anything up to the largest bucket's 128. */
const rowsArb = fc.oneof(fc.constantFrom(1, 5, 6, 7, 12, 13, 18, 19, 108, 109, 127, 128), fc.integer({ min: 1, max: 128 }));

describe.each(Object.keys(DEPLOYMENTS) as Name[])('gemm blocking paths, %s weights', (name) => {
  it('every row count, role and thread count gives the documented order bit for bit', async () => {
    const m = modules.get(name)!;
    const driver = name === 'bf16' ? fallbacks.get('MD_NO_AMX')! : m.driver;
    const roles = m.plan.gemms.filter((g) => ['q', 'gate_up', 'down', 'lm_head'].includes(g.role));
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 0x7fffffff }), fc.constantFrom(...roles), rowsArb, fc.constantFrom(1, 2, 3), fc.boolean(), fc.constantFrom(0, 0.002, 0.02), async (seed, g, rows, threads, withBias, fine) => {
        const rnd = mulberry32(seed);
        // Some draws plant values below the emulated VDPBF16PS's coarse bound (md_cpu.h dot_bf16_coarse).
        const [x, wf] = [rand(rnd, rows * g.k, 2), rand(rnd, g.n * g.k, 0.5)];
        plantFine(rnd, x, fine);
        plantFine(rnd, wf, fine);
        const w = store(m.plan.deployment.dtype, wf);
        const bias = withBias && g.role !== 'lm_head' ? store(m.plan.deployment.dtype, rand(rnd, g.n, 1)) : undefined;
        const res = await driver.call(`md_gemm_${g.role}_b32`, { x, w: w.bytes, bias: bias?.bytes ?? null, y: { out: rows * g.n * 4 }, rows }, threads);
        expect(res.status).toBe(0);
        const y = f32(res.out.y);
        const want = gemmOrderRef(x, w.values, bias?.values, rows, g.n, g.k, m.plan.deployment.dtype);
        expect(bits(y), `${g.role}, ${rows} rows, ${threads} threads`).toEqual(bits(want));
        if (name === 'bf16')
          for (const [macro, other_] of fallbacks) {
            if (macro === 'MD_NO_AMX') continue;
            const other = await other_.call(`md_gemm_${g.role}_b32`, { x, w: w.bytes, bias: bias?.bytes ?? null, y: { out: rows * g.n * 4 }, rows }, threads);
            expect(bits(f32(other.out.y)), `${g.role}, ${rows} rows, ${macro}`).toEqual(bits(y));
          }
        const r = Math.floor(rnd() * rows);
        const alone = await driver.call(`md_gemm_${g.role}_b1`, { x: x.slice(r * g.k, (r + 1) * g.k), w: w.bytes, bias: bias?.bytes ?? null, y: { out: g.n * 4 }, rows: 1 }, 1);
        expect(bits(f32(alone.out.y)), `${g.role} row ${r} alone`).toEqual(bits(y.slice(r * g.n, (r + 1) * g.n)));
      }),
      { numRuns: 16 },
    );
  }, 600_000);
});

describe('gemm blocking paths, bf16 weights: where the emulated VDPBF16PS may skip its flushes', () => {
  // One output whose exact value is +0 only because of a flush: block 0's weights are fine (2^-100), so it
  // runs every flush and leaves the accumulator at 2^-110 + 2^-128, which is fine too; block 1 is coarse
  // (2^-55 times -2^-55) and takes it to 2^-128, subnormal, which VDPBF16PS flushes to +0. Taking the fast
  // path on block 0's weights (bf16_coarse) or on that accumulator (acc_coarse) would leave 2^-128.
  it('a fine weight block or a fine accumulator runs every flush, on every build', async () => {
    const m = modules.get('bf16')!;
    const g = m.plan.gemms.find((q) => q.role === 'q')!;
    expect(g.k).toBeGreaterThanOrEqual(64);
    const x = new Float32Array(g.k), wf = new Float32Array(g.n * g.k);
    [x[0], x[1], x[33]] = [2 ** -28, 2 ** -10, 2 ** -55];
    [wf[0], wf[1], wf[33]] = [2 ** -100, 2 ** -100, -(2 ** -55)];
    const w = store('bf16', wf);
    expect(bits(gemmOrderRef(x, w.values, undefined, 1, g.n, g.k, 'bf16'))[0]).toBe(0);
    for (const [label, driver] of [['native', m.driver], ...fallbacks] as const) {
      const res = await driver.call(`md_gemm_${g.role}_b1`, { x, w: w.bytes, bias: null, y: { out: g.n * 4 }, rows: 1 }, 1);
      expect(res.status).toBe(0);
      expect(bits(f32(res.out.y))[0], label).toBe(0);
    }
  });
});

describe('gemm blocking paths, bf16 weights on the build\'s own path (AMX where the host has it)', () => {
  it('every row count, role and thread count is within the float64 reference, and a row alone gives its bits', async () => {
    const m = modules.get('bf16')!;
    const roles = m.plan.gemms.filter((g) => ['q', 'gate_up', 'down', 'lm_head'].includes(g.role));
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 0x7fffffff }), fc.constantFrom(...roles), rowsArb, fc.constantFrom(1, 2, 3), async (seed, g, rows, threads) => {
        const rnd = mulberry32(seed);
        const x = rand(rnd, rows * g.k, 2);
        const w = store('bf16', rand(rnd, g.n * g.k, 0.5));
        const res = await m.driver.call(`md_gemm_${g.role}_b32`, { x, w: w.bytes, bias: null, y: { out: rows * g.n * 4 }, rows }, threads);
        expect(res.status).toBe(0);
        const y = f32(res.out.y);
        expect(relError(y, gemmRef(...cpuGemmInputs('bf16', x, w.values), undefined, rows, g.n, g.k)), `${g.role}, ${rows} rows`).toBeLessThan(1e-5);
        for (const r of [0, Math.floor(rnd() * rows), rows - 1]) {
          const alone = await m.driver.call(`md_gemm_${g.role}_b1`, { x: x.slice(r * g.k, (r + 1) * g.k), w: w.bytes, bias: null, y: { out: g.n * 4 }, rows: 1 }, 1);
          expect(bits(f32(alone.out.y)), `${g.role} row ${r} alone`).toEqual(bits(y.slice(r * g.n, (r + 1) * g.n)));
        }
      }),
      { numRuns: 16 },
    );
  }, 600_000);
});
