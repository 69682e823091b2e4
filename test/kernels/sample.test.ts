// md_sample on the CPU backend, on a module with vocab 512 and one with vocab 1001 (not a multiple of a
// Philox block or a lane tile):
// - tokens are model/sampling.ts's sampleRow exactly, over random logits (peaked, flat, with NaN, -inf,
//   exact ties, +inf maxima), temperatures (0, 1e-6, 0.3 .. 2), top-k (0, 1, any, >= vocab), top-p (1, any),
//   min-p (0, any), 64-bit seeds and positions;
// - temperature 0 is md_argmax bit for bit, whatever the filters; top-k 1 is the argmax at any temperature;
// - a row's token does not depend on the rows around it or the thread count;
// - over >= 64K positions, each token is drawn as often as the filtered softmax says (6 sigma + 5), and a
//   token the filters drop is never drawn;
// - invalid parameters are MD_ERR_ARG with nothing written.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sampleRow, samplingDistribution, type SamplingParams } from '../../model/sampling.ts';
import { mulberry32 } from '../harness/kernels/attention-case.ts';
import { KERNEL_DEPLOYMENTS } from '../harness/kernels/deployments.ts';
import { i32 } from '../harness/kernels/driver.ts';
import { useModules, type ModuleUnderTest } from '../harness/kernels/module.ts';
import { makeDeployment, modelConfig } from '../support/deployments.ts';

const modules = useModules({
  mhaF32: KERNEL_DEPLOYMENTS.mhaF32,
  /** The same deployment as test/kernels/lm-head-argmax.test.ts's (one compile per run). */
  oddVocabBf16: makeDeployment({
    model: modelConfig({ numHeads: 2, numKvHeads: 1, headDim: 20, vocabSize: 1001, name: 'odd-vocab' }),
    batch: [1, 2, 5],
    gamma: 2,
    maxSeq: 128,
    pageSize: 8,
    dtype: 'bf16',
  }),
});
const NAMES = ['mhaF32', 'oddVocabBf16'] as const;

interface Row {
  logits: Float32Array;
  params: SamplingParams;
  seed: bigint;
  pos: number;
}

/** md_sample's arguments for rows. */
function args(rows: readonly Row[], V: number) {
  const logits = new Float32Array(rows.length * V);
  rows.forEach((r, i) => logits.set(r.logits, i * V));
  const seed = new Uint32Array(rows.length * 2);
  rows.forEach((r, i) => {
    seed[2 * i] = Number(r.seed & 0xffffffffn);
    seed[2 * i + 1] = Number(r.seed >> 32n);
  });
  return {
    logits,
    temperature: Float32Array.from(rows, (r) => r.params.temperature),
    top_k: Int32Array.from(rows, (r) => r.params.topK),
    top_p: Float32Array.from(rows, (r) => r.params.topP),
    min_p: Float32Array.from(rows, (r) => r.params.minP),
    seed,
    row_pos: Int32Array.from(rows, (r) => r.pos),
    tokens: { out: rows.length * 4 },
    rows: rows.length,
  };
}

async function sample(m: ModuleUnderTest, rows: readonly Row[], threads = 2): Promise<number[]> {
  const res = await m.driver.call('md_sample', args(rows, m.plan.dims.vocab), threads);
  expect(res.status).toBe(0);
  return Array.from(i32(res.out.tokens));
}

/** A logits row with the hard cases built in, from a seed. */
function logitsRow(V: number, seed: number): Float32Array {
  const rnd = mulberry32(seed);
  const shape = Math.floor(rnd() * 6);
  const scale = [0.1, 1, 4, 12, 1, 3][shape];
  const l = Float32Array.from({ length: V }, () => (rnd() * 2 - 1) * scale);
  if (shape === 4) l.fill(0.5); // all equal: ranks by index only
  if (shape === 5) for (let c = 0; c < 8; c++) l[Math.floor(rnd() * V)] = l[Math.floor(rnd() * V)]; // ties
  if (rnd() < 0.3) for (let c = 0; c < 5; c++) l[Math.floor(rnd() * V)] = NaN;
  if (rnd() < 0.3) for (let c = 0; c < 20; c++) l[Math.floor(rnd() * V)] = -Infinity;
  if (rnd() < 0.05) l[Math.floor(rnd() * V)] = Infinity;
  if (rnd() < 0.03) l.fill(NaN);
  return l;
}

const paramsArb = (V: number): fc.Arbitrary<SamplingParams> =>
  fc.record({
    temperature: fc.oneof(fc.constantFrom(0, 1e-6, 0.3, 0.7, 1, 2), fc.float({ min: Math.fround(0.01), max: 5, noNaN: true })),
    topK: fc.oneof(fc.constant(0), fc.constant(1), fc.integer({ min: 1, max: V + 5 })),
    topP: fc.oneof(fc.constant(1), fc.float({ min: Math.fround(0.01), max: 1, noNaN: true }), fc.constantFrom(Math.fround(1e-6), Math.fround(0.999))),
    minP: fc.oneof(fc.constant(0), fc.float({ min: 0, max: 1, noNaN: true }), fc.constant(1)),
  });

const rowArb = (V: number): fc.Arbitrary<Row> =>
  fc.record({
    logits: fc.integer({ min: 1, max: 0x7fffffff }).map((s) => logitsRow(V, s)),
    params: paramsArb(V),
    seed: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    pos: fc.integer({ min: 0, max: 1 << 22 }),
  });

describe.each(NAMES)('md_sample, module %s', (name) => {
  const mod = () => modules.get(name)!;

  it('gives the reference sampler\'s tokens on random logits, parameters, seeds and positions', async () => {
    const m = mod();
    const V = m.plan.dims.vocab;
    let sampled = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(rowArb(V), { minLength: 1, maxLength: 48 }), async (rows) => {
        const got = await sample(m, rows);
        rows.forEach((r, i) => {
          const want = sampleRow(r.logits, r.params, r.seed, r.pos);
          expect(got[i], `row ${i}: ${JSON.stringify(r.params)}`).toBe(want);
          expect(want >= 0 && want < V).toBe(true);
        });
        sampled += rows.filter((r) => r.params.temperature > 0).length;
      }),
      { numRuns: 40 },
    );
    expect(sampled).toBeGreaterThan(100);
  });

  it('temperature 0 is md_argmax bit for bit whatever the filters; top-k 1 is the argmax at any temperature', async () => {
    const m = mod();
    const V = m.plan.dims.vocab;
    await fc.assert(
      fc.asyncProperty(fc.array(rowArb(V), { minLength: 1, maxLength: 32 }), async (rows) => {
        const greedy = rows.map((r) => ({ ...r, params: { ...r.params, temperature: 0 } }));
        const logits = args(greedy, V).logits;
        const argmax = await m.driver.call('md_argmax', { logits, tokens: { out: rows.length * 4 }, rows: rows.length });
        expect(await sample(m, greedy)).toEqual(Array.from(i32(argmax.out.tokens)));
        const topOne = rows.map((r) => ({ ...r, params: { ...r.params, topK: 1 } }));
        expect(await sample(m, topOne)).toEqual(Array.from(i32(argmax.out.tokens)));
      }),
      { numRuns: 15 },
    );
  });

  it('is row-invariant: a row alone, among others, at 1 or 3 threads gives the same token', async () => {
    const m = mod();
    const V = m.plan.dims.vocab;
    await fc.assert(
      fc.asyncProperty(fc.array(rowArb(V), { minLength: 2, maxLength: 24 }), async (rows) => {
        const all = await sample(m, rows, 2);
        expect(await sample(m, rows, 1)).toEqual(all);
        expect(await sample(m, [...rows].reverse(), 3)).toEqual([...all].reverse());
        for (let i = 0; i < rows.length; i += 5) expect((await sample(m, [rows[i]], 1))[0]).toBe(all[i]);
      }),
      { numRuns: 8 },
    );
  });

  it('refuses invalid parameters with MD_ERR_ARG, writing nothing', async () => {
    const m = mod();
    const V = m.plan.dims.vocab;
    const ok: Row = { logits: logitsRow(V, 3), params: { temperature: 1, topK: 0, topP: 1, minP: 0 }, seed: 1n, pos: 0 };
    const bad: Partial<SamplingParams>[] = [
      { temperature: -1 },
      { temperature: NaN },
      { temperature: Infinity },
      { temperature: -0.0001 },
      { topK: -1 },
      { topP: 0 },
      { topP: 1.0001 },
      { topP: NaN },
      { topP: -0.5 },
      { minP: -0.1 },
      { minP: 1.5 },
      { minP: NaN },
    ];
    for (const b of bad) {
      const rows = [ok, { ...ok, params: { ...ok.params, ...b } }, ok];
      const res = await m.driver.call('md_sample', args(rows, V));
      expect(res.status, JSON.stringify(b)).toBe(1);
      expect(Array.from(i32(res.out.tokens)), JSON.stringify(b)).toEqual([-1, -1, -1]);
    }
    // The edges are valid: temperature 0, top-p 1, min-p 0 and 1, a huge top-k.
    const edges: Partial<SamplingParams>[] = [{ temperature: 0 }, { topP: 1 }, { minP: 0 }, { minP: 1 }, { topK: 2 ** 31 - 1 }, { topP: Math.fround(1e-30) }];
    for (const e of edges) expect((await m.driver.call('md_sample', args([{ ...ok, params: { ...ok.params, ...e } }], V))).status, JSON.stringify(e)).toBe(0);
  });
});

describe('md_sample draws from the filtered softmax', () => {
  /** A row where only a few tokens have finite logits; the rest are -inf (probability 0). */
  function peaked(V: number, live: readonly number[]): Float32Array {
    const l = new Float32Array(V).fill(-Infinity);
    live.forEach((v, i) => (l[(i * 37 + 5) % V] = v));
    return l;
  }

  const CASES: { label: string; params: SamplingParams; live: number[] }[] = [
    { label: 'temperature 1', params: { temperature: 1, topK: 0, topP: 1, minP: 0 }, live: [1, 0.5, 0, -0.5, -1, -2, 2.5, 0.1] },
    { label: 'temperature 0.7, top-k 5', params: { temperature: 0.7, topK: 5, topP: 1, minP: 0 }, live: [1, 0.5, 0, -0.5, -1, -2, 2.5, 0.1] },
    { label: 'temperature 1.3, top-p 0.8', params: { temperature: 1.3, topK: 0, topP: 0.8, minP: 0 }, live: [1, 0.5, 0, -0.5, -1, -2, 2.5, 0.1] },
    { label: 'temperature 1, min-p 0.2', params: { temperature: 1, topK: 0, topP: 1, minP: 0.2 }, live: [1, 0.5, 0, -0.5, -1, -2, 2.5, 0.1] },
  ];

  it.each(CASES)('$label: 64K positions, every count within 6 sigma + 5, dropped tokens never drawn', async ({ params, live }) => {
    const m = modules.get('mhaF32')!;
    const V = m.plan.dims.vocab;
    const l = peaked(V, live);
    const dist = samplingDistribution(l, params);
    const TRIALS = 1 << 16;
    const BATCH = 4096;
    const counts = new Map<number, number>();
    for (let start = 0; start < TRIALS; start += BATCH) {
      const rows = Array.from({ length: BATCH }, (_, i) => ({ logits: l, params, seed: 0x5eedn, pos: start + i }));
      for (const t of await sample(m, rows, 2)) counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    for (const [t, n] of counts) expect(dist.has(t), `token ${t} (probability 0) drawn ${n} times`).toBe(true);
    for (const [t, p] of dist) {
      const want = TRIALS * p;
      const sigma = Math.sqrt(TRIALS * p * (1 - p));
      expect(Math.abs((counts.get(t) ?? 0) - want), `token ${t}: p ${p}`).toBeLessThanOrEqual(6 * sigma + 5);
    }
    expect(dist.size).toBeGreaterThan(1);
  }, 120_000);
});
