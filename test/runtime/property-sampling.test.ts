// Sample-and-match is exact, as a property over random tiny models (the runtime cases built with the
// sampleAndMatch verifier), prompts, batches, gammas (fixed, 'auto', or changed before every round), prefill
// chunks, draft windows, seeds and sampling parameters (temperature 0, near 0, 0.3 .. 2; top-k 0, 1, any;
// top-p 1, any; min-p 0, any), greedy and sampled requests mixed in one batch: a seeded speculative run
// emits exactly the seeded autoregressive run's tokens, with bitwise-equal logits, and a request's tokens
// do not change when it is batched with others or moved to another bucket (the reference decodes each
// request alone, in bucket 1; every run decodes a round in a larger bucket). Seeds: test/support/seeds.ts
// (MAGICDEC_SEED replays a fresh one); MD_RUNTIME_PROPERTY_RUNS sets the regression runs per case.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine as EngineT, EngineOptions, EngineStats, Generation, RequestOptions, RequestStats } from '../../runtime/node/index.ts';
import { bitwiseMismatch, leftBucketOne, prepareCase, withEngine, type CaseName, type Decoded, type PreparedCase } from '../support/runtime-cases.ts';
import { Stepper } from '../support/runtime-stepper.ts';
import { forEachSeed } from '../support/seeds.ts';
import { buildRuntime } from './build-runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'md-prop-sampling-'));
let Engine: typeof EngineT;

beforeAll(async () => {
  buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const MAX_TOKENS = 32;
const RUNS = Number(process.env.MD_RUNTIME_PROPERTY_RUNS ?? 40);
const FRESH_RUNS = Math.ceil(RUNS / 4);

interface Sampling {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
}

interface Request {
  prompt: number[];
  maxTokens: number;
  sampling: Sampling;
  seed: number;
}

interface Case {
  requests: Request[];
  mode: 'spec' | 'ar';
  gamma: number | 'auto' | undefined;
  schedule?: (number | 'auto')[];
  maxBatch: number;
  prefillChunk: number;
  /** The engine's schedule: prefill first (rounds decode the whole batch) or interleaved (the default). */
  prefillFirst: boolean;
  draft: Record<string, number>;
}

const GREEDY: Sampling = { temperature: 0, topK: 0, topP: 1, minP: 0 };

function samplingArb(V: number): fc.Arbitrary<Sampling> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant(GREEDY) },
    {
      weight: 5,
      arbitrary: fc.record({
        temperature: fc.oneof(fc.constantFrom(1e-6, 0.3, 0.7, 1, 1.5), fc.float({ min: Math.fround(0.05), max: 2, noNaN: true })),
        topK: fc.oneof(fc.constant(0), fc.constant(1), fc.integer({ min: 2, max: V + 3 })),
        topP: fc.oneof(fc.constant(1), fc.float({ min: Math.fround(0.05), max: 1, noNaN: true })),
        minP: fc.oneof(fc.constant(0), fc.constant(0), fc.float({ min: 0, max: Math.fround(0.5), noNaN: true })),
      }),
    },
  );
}

function caseArb(p: PreparedCase): fc.Arbitrary<Case> {
  const c = p.case;
  const V = c.model.vocabSize;
  const G = c.gamma;
  const maxRows = Math.max(...c.buckets) * (G + 1);
  const length = fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 40 }) }, { weight: 1, arbitrary: fc.integer({ min: 41, max: 200 }) });
  const request = (minTokens: number) =>
    fc.record({
      prompt: length.chain((n) => fc.array(fc.integer({ min: 0, max: V - 1 }), { minLength: n, maxLength: n })),
      maxTokens: fc.integer({ min: minTokens, max: MAX_TOKENS }),
      sampling: samplingArb(V),
      seed: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.maxSafeNat()),
    });
  const window = fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 65, max: c.maxSeq + 64 }));
  const draft = c.draft === 'streaming' ? fc.record({ kv_sink: fc.integer({ min: 0, max: 40 }), kv_window: window }) : fc.record({ kv_window: window });
  const gamma = fc.oneof(fc.integer({ min: 1, max: G }), fc.constant<'auto'>('auto'));
  return fc
    .record({
      // The first two requests have tokens left after their prefill; with prefillFirst they run side by side
      // in a bucket above 1 (the interleaved schedule may start the first before the second's prefill ends).
      pair: fc.tuple(request(2), request(2)),
      prefillFirst: fc.boolean(),
      more: fc.array(request(1), { maxLength: 5 }),
      mode: fc.constantFrom<'spec' | 'ar'>('spec', 'spec', 'spec', 'ar'),
      gamma: fc.oneof({ weight: 4, arbitrary: gamma }, { weight: 1, arbitrary: fc.constant(undefined) }),
      schedule: fc.option(fc.array(gamma, { minLength: 2, maxLength: 5 }), { nil: undefined, freq: 3 }),
      maxBatch: fc.integer({ min: 2, max: 8 }),
      prefillChunk: fc.oneof(fc.integer({ min: 1, max: maxRows }), fc.constant(maxRows)),
      draft,
    })
    .map(({ pair, more, schedule, ...k }) => ({ ...k, requests: [...pair, ...more], ...(k.mode === 'spec' && schedule ? { schedule } : {}) }));
}

const requestOptions = (r: Request): RequestOptions => ({ maxTokens: r.maxTokens, ignoreEos: true, ...r.sampling, seed: r.seed });

type Decoding = Decoded & { stats: RequestStats; seed?: number };

async function decode(p: PreparedCase, k: Case, opts: EngineOptions): Promise<{ gens: Decoding[]; stats: EngineStats }> {
  if (!k.schedule) {
    return withEngine(Engine, p, opts, async (e) => {
      for (const [key, v] of Object.entries(k.draft)) e.setParam('draft', key, v);
      const gens = await Promise.all(k.requests.map((r) => e.generate(r.prompt, requestOptions(r))));
      return { gens, stats: e.stats() };
    });
  }
  const schedule = k.schedule;
  const s = await Stepper.create(p.modelDir, p.library, p.case.model.vocabSize, opts);
  try {
    for (const [key, v] of Object.entries(k.draft)) s.setParam('draft', key, v);
    const run = await s.run(
      k.requests.map((r) => ({ prompt: r.prompt, opts: requestOptions(r), at: 0 })),
      (step) => s.setGamma(schedule[step % schedule.length]),
    );
    run.requests.forEach((r, i) => expect(r.reason, `request ${i}: ${r.error ?? ''}`).toBe('length'));
    return { gens: run.requests.map((r) => ({ tokens: r.tokens, logits: r.logits, stats: r.stats! })), stats: run.stats };
  } finally {
    s.close();
  }
}

const CASES: CaseName[] = ['mhaLinear', 'qwen2'];

describe.each(CASES)('seeded sample-and-match speculative == seeded autoregressive, bitwise: %s', (name) => {
  let p: PreparedCase;
  let reference: EngineT;
  beforeAll(async () => {
    p = await prepareCase(name, root);
    reference = await Engine.create(p.modelDir, p.library, { mode: 'ar', maxBatch: 1, keepLogits: true });
  });
  afterAll(() => reference?.close());

  it('for random sampling parameters, seeds, prompts, batches, gammas, prefill chunks and draft windows', async () => {
    expect(p.plan.deployment.verify.mode).toBe('match');
    let sampledRounds = 0;
    let sampledRejected = 0;
    let sampledAccepted = 0;
    let sampled = 0;
    /** Sampled requests whose tokens differ from the greedy tokens of the same prompt: noise really drew. */
    let differsFromGreedy = 0;
    let greedyToo = 0;
    const property = fc.asyncProperty(caseArb(p), async (k) => {
      const want: Generation[] = [];
      for (const r of k.requests) want.push(await reference.generate(r.prompt, requestOptions(r)));
      const opts: EngineOptions = { mode: k.mode, gamma: k.gamma, maxBatch: k.maxBatch, prefillChunk: k.prefillChunk, prefillFirst: k.prefillFirst };
      const { gens: got, stats } = await decode(p, k, opts);
      k.requests.forEach((r, i) => {
        const why = bitwiseMismatch(got[i], want[i]);
        if (why) throw new Error(`request ${i} (prompt ${r.prompt.length}, ${JSON.stringify(r.sampling)}, seed ${r.seed}): ${why}`);
        expect(want[i].seed).toBe(r.seed);
      });
      if (k.prefillFirst) expect(leftBucketOne(stats), `buckets ${JSON.stringify(stats.bucketRounds)}`).toBe(true);
      expect(stats.freePages).toBe(k.maxBatch * p.plan.pagesPerSeq);
      for (const [i, r] of k.requests.entries()) {
        if (r.sampling.temperature === 0) {
          greedyToo++;
          continue;
        }
        sampled++;
        if (k.mode === 'spec') {
          sampledRounds += got[i].stats.rounds;
          sampledAccepted += got[i].stats.accepted;
          sampledRejected += got[i].stats.drafted - got[i].stats.accepted;
        }
        if (r.sampling.temperature >= 0.3 && r.sampling.topK !== 1 && i < 2) {
          const greedy = await reference.generate(r.prompt, { maxTokens: r.maxTokens, ignoreEos: true });
          if (greedy.tokens.join() !== want[i].tokens.join()) differsFromGreedy++;
        }
      }
    });
    await forEachSeed(10 + CASES.indexOf(name), { regression: RUNS, fresh: FRESH_RUNS }, (seed, numRuns) =>
      fc.assert(property, { numRuns, seed, endOnFailure: process.env.MD_RUNTIME_SHRINK === undefined }),
    );
    // Not vacuous: sampled requests ran speculative rounds in which drafts were both accepted and rejected,
    // greedy requests shared the batches, and the samples were not the greedy tokens.
    expect(sampled).toBeGreaterThan(0);
    expect(greedyToo).toBeGreaterThan(0);
    expect(sampledRounds).toBeGreaterThan(0);
    expect(sampledAccepted).toBeGreaterThan(0);
    expect(sampledRejected).toBeGreaterThan(0);
    expect(differsFromGreedy).toBeGreaterThan(0);
  });
});
