// The central claim of MagicDec, as a property over random tiny models, prompts, batches, gammas (fixed,
// 'auto', or changed before every round), prefill chunks, KV pools and draft/target runtime params:
// self-speculative decoding emits exactly the tokens of autoregressive decoding, and the logits of every
// emitted token are bitwise equal (docs/ARCHITECTURE.md, invariant 1). Every case decodes a round in a
// batch bucket the AR reference (one sequence at a time, bucket 1) never uses; on the multi-layer `long`
// case some prompts pass 2K tokens, so rejected drafts leave K/V that differs from the target's and must be
// overwritten. In the same runs, requests whose prompt is an earlier prompt plus a prefix of its output check that a position
// computed in a prefill chunk equals the same position computed by decoding, bit for bit.
// Knobs: MD_RUNTIME_PROPERTY_RUNS (regression runs per case; a quarter as many from the fresh seed),
// MAGICDEC_SEED / MD_RUNTIME_PROPERTY_SEED / MD_RUNTIME_MODULE_SEED (seeds.ts, runtime-cases.ts),
// MD_RUNTIME_SHRINK=1 (shrink a failure to a minimal case; off by default, every shrink step decodes).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine as EngineT, EngineOptions, EngineStats, Gamma, Generation, RequestStats } from '../../runtime/node/index.ts';
import {
  bitwiseMismatch,
  gammaBound,
  leftBucketOne,
  pagesFor,
  prepareCase,
  withEngine,
  type CaseName,
  type Decoded,
  type GammaChoice,
  type PreparedCase,
} from '../support/runtime-cases.ts';
import { Stepper } from '../support/runtime-stepper.ts';
import { forEachSeed } from '../support/seeds.ts';
import { buildRuntime } from './build-runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'md-prop-spec-'));
let Engine: typeof EngineT;

beforeAll(async () => {
  buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const MAX_TOKENS = 40;
const RUNS = Number(process.env.MD_RUNTIME_PROPERTY_RUNS ?? 40);
const FRESH_RUNS = Math.ceil(RUNS / 4);
/** Prompts of the `long` case reach past this many tokens. */
const LONG_PROMPT = 2048;

interface Request {
  prompt: number[];
  maxTokens: number;
}

interface Case {
  requests: Request[];
  /** Extensions: request `of` re-run with `take` of its reference output appended to its prompt. */
  extensions: { of: number; take: number }[];
  mode: 'spec' | 'ar';
  /** The engine's gamma option; undefined: the module's default ('auto' on a module built so). */
  gamma: GammaChoice;
  /** Speculative only: gammas set before every step, in turn, so that gamma changes from round to round. */
  schedule?: Gamma[];
  maxBatch: number;
  prefillChunk: number;
  /** Extra KV pages over what the two first requests, or the one that needs most, take; undefined: the default pool. */
  spareKvPages?: number;
  draft: Record<string, number>;
  target: Record<string, number>;
}

function caseArb(p: PreparedCase): fc.Arbitrary<Case> {
  const c = p.case;
  const V = c.model.vocabSize;
  const G = c.gamma;
  const maxRows = Math.max(...c.buckets) * (G + 1);
  // Mostly short prompts; some that span split-KV chunks; on the long case a few past 2K tokens (each costs
  // 2K-token prefills, ~1 s of CPU apiece, so one request in ~40: a long prompt in about one draw of eight).
  const longest = c.maxSeq - MAX_TOKENS - G;
  const length = fc.oneof(
    { weight: 26, arbitrary: fc.integer({ min: 1, max: 40 }) },
    { weight: 13, arbitrary: fc.integer({ min: 41, max: Math.min(300, longest) }) },
    ...(longest >= LONG_PROMPT ? [{ weight: 1, arbitrary: fc.integer({ min: LONG_PROMPT, max: longest }) }] : []),
  );
  const request = (minTokens: number, lengths: fc.Arbitrary<number> = length) =>
    fc.record({
      prompt: lengths.chain((n) => fc.array(fc.integer({ min: 0, max: V - 1 }), { minLength: n, maxLength: n })),
      maxTokens: fc.integer({ min: minTokens, max: MAX_TOKENS }),
    });
  // Prompt rows a step feeds beside a one-sequence decode round: the default step_tokens (the largest
  // bucket's rows, runtime/src/engine.h) less that round's gamma + 1 rows.
  const besideRound = maxRows - (G + 1);
  // Window >= the context makes the draft exact (acceptance 1); small windows make it wrong often; 0 and
  // negative ones leave the draft rows nothing to attend to (their attention output is 0).
  const window = fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 65, max: c.maxSeq + 64 }), fc.integer({ min: -2, max: 0 }));
  const draft =
    c.draft === 'streaming'
      ? fc.record({ kv_sink: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 40 })), kv_window: window })
      : fc.record({ kv_window: window });
  // A target window of 0 masks everything: a degenerate model, but still the same one for AR and spec.
  const target = c.target === 'sliding' ? fc.record({ attn_window: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constant(c.maxSeq), fc.constant(0)) }) : fc.constant({});
  const gamma = fc.oneof(fc.integer({ min: 1, max: G }), fc.constant<'auto'>('auto'));
  return fc
    .record({
      more: fc.array(request(1), { maxLength: 6 }),
      extensionSeeds: fc.array(fc.record({ of: fc.nat(), take: fc.nat() }), { maxLength: 3 }),
      mode: fc.constantFrom<'spec' | 'ar'>('spec', 'spec', 'spec', 'ar'),
      gamma: fc.oneof({ weight: 4, arbitrary: gamma }, { weight: 1, arbitrary: fc.constant(undefined) }),
      // Half the speculative draws change gamma before every step (step by step); half run the public API.
      // A schedule may turn speculation off for a step ('off': an autoregressive round on the same cache).
      schedule: fc.option(fc.array(fc.oneof({ weight: 4, arbitrary: gamma }, { weight: 1, arbitrary: fc.constant<'off'>('off') }), { minLength: 2, maxLength: 6 }), { nil: undefined, freq: 2 }),
      maxBatch: fc.integer({ min: 2, max: 8 }),
      // One row per step is the extreme case (and slow on long prompts): drawn one time in six.
      prefillChunk: fc.oneof({ weight: 1, arbitrary: fc.constant(1) }, { weight: 3, arbitrary: fc.integer({ min: 1, max: maxRows }) }, { weight: 2, arbitrary: fc.constant(maxRows) }),
      spareKvPages: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
      draft,
      target,
    })
    // The first two requests decode side by side, in a bucket above 1 where the reference never runs: the
    // batch and the pool hold both; the second's prompt fits in one chunk beside a one-sequence round, so it
    // completes in the step that completes the first's or in the next; and the first has tokens left after
    // its prefill token and one round (at most gamma + 1 more).
    .chain((k) =>
      fc
        .tuple(request(G + 3), request(2, fc.integer({ min: 1, max: Math.max(1, Math.min(k.prefillChunk, besideRound)) })))
        .map((pair) => ({ ...k, pair })),
    )
    .map(({ pair, more, extensionSeeds, schedule, ...k }) => {
      const requests = [...pair, ...more];
      return {
        ...k,
        requests,
        ...(k.mode === 'spec' && schedule ? { schedule } : {}),
        // take >= 1 so the extended prompt really holds decoded tokens; take < maxTokens so one is left to emit.
        extensions: extensionSeeds
          .map(({ of, take }) => ({ of: of % requests.length, take }))
          .filter(({ of }) => requests[of].maxTokens > 1)
          .map(({ of, take }) => ({ of, take: 1 + (take % (requests[of].maxTokens - 1)) })),
      };
    });
}

type Decoding = Decoded & { stats: RequestStats };

interface SetsParams {
  setParam(pass: 'target' | 'draft', key: string, value: number): void;
}

function setParams(e: SetsParams, k: Case): void {
  for (const [key, v] of Object.entries(k.draft)) e.setParam('draft', key, v);
  for (const [key, v] of Object.entries(k.target)) e.setParam('target', key, v);
}

/**
 * Decodes `requests` on a fresh engine: all submitted at once through the public API, or, with a gamma
 * schedule, step by step (runtime-stepper.ts) with the next gamma set before every step.
 */
async function decode(p: PreparedCase, k: Case, opts: EngineOptions, requests: readonly Request[]): Promise<{ gens: Decoding[]; stats: EngineStats }> {
  const schedule = k.schedule;
  if (!schedule) {
    return withEngine(Engine, p, opts, async (e) => {
      setParams(e, k);
      const gens = await Promise.all(requests.map((r) => e.generate(r.prompt, { maxTokens: r.maxTokens, ignoreEos: true })));
      return { gens, stats: e.stats() };
    });
  }
  const s = await Stepper.create(p.modelDir, p.library, p.case.model.vocabSize, opts);
  try {
    setParams(s, k);
    const arrivals = requests.map((r) => ({ prompt: r.prompt, opts: { maxTokens: r.maxTokens, ignoreEos: true }, at: 0 }));
    const run = await s.run(arrivals, (step) => s.setGamma(schedule[step % schedule.length]));
    run.requests.forEach((r, i) => expect(r.reason, `request ${i}: ${r.error ?? ''}`).toBe('length'));
    return { gens: run.requests.map((r) => ({ tokens: r.tokens, logits: r.logits, stats: r.stats! })), stats: run.stats };
  } finally {
    s.close();
  }
}

const CASES: CaseName[] = ['mhaLinear', 'long', 'qwen2', 'tiedBf16', 'mistral'];

describe.each(CASES)('speculative == autoregressive, bitwise: %s', (name) => {
  let p: PreparedCase;
  let reference: EngineT;
  beforeAll(async () => {
    p = await prepareCase(name, root);
    // Autoregressive, one request at a time, default prefill chunk: what every other schedule must match.
    reference = await Engine.create(p.modelDir, p.library, { mode: 'ar', maxBatch: 1, keepLogits: true });
  });
  afterAll(() => reference?.close());

  it('for random prompts, batches, gammas (fixed, auto, per round), prefill chunks, KV pools and runtime params', async () => {
    const G = p.case.gamma;
    let rounds = 0;
    let rejected = 0;
    let extensions = 0;
    let longest = 0;
    /** Runs whose acceptance was strictly between 0 and 1: both the accept and the reject paths ran. */
    let mixed = 0;
    /** Runs that drafted more than one gamma. */
    let varied = 0;
    /** Requests with a prompt past LONG_PROMPT that had a draft rejected. */
    let longRejected = 0;
    const property = fc.asyncProperty(caseArb(p), async (k) => {
      for (const [key, v] of Object.entries(k.target)) reference.setParam('target', key, v);
      const want: Generation[] = [];
      for (const r of k.requests) want.push(await reference.generate(r.prompt, { maxTokens: r.maxTokens, ignoreEos: true }));
      const ext = k.extensions.map(({ of, take }) => ({
        prompt: [...k.requests[of].prompt, ...want[of].tokens.slice(0, take)],
        maxTokens: k.requests[of].maxTokens - take,
      }));
      const pages = k.requests.map((r) => pagesFor(p.case, r.prompt.length, r.maxTokens, k.mode));
      const need = Math.max(...pages, pages[0] + pages[1]);
      const opts: EngineOptions = {
        mode: k.mode,
        gamma: k.gamma,
        maxBatch: k.maxBatch,
        prefillChunk: k.prefillChunk,
        ...(k.spareKvPages === undefined ? {} : { kvPages: need + k.spareKvPages }),
      };
      const { gens: got, stats: s } = await decode(p, k, opts, [...k.requests, ...ext]);
      k.requests.forEach((r, i) => {
        const why = bitwiseMismatch(got[i], want[i]);
        if (why) throw new Error(`request ${i} (prompt ${r.prompt.length}, maxTokens ${r.maxTokens}): ${why}`);
      });
      k.extensions.forEach(({ of, take }, j) => {
        const why = bitwiseMismatch(got[k.requests.length + j], want[of], take);
        if (why) throw new Error(`request ${of} resumed after ${take} of its tokens (prefill vs decode): ${why}`);
      });
      expect(s.freePages).toBe(opts.kvPages ?? k.maxBatch * p.plan.pagesPerSeq);
      expect(leftBucketOne(s), `buckets ${JSON.stringify(s.bucketRounds)}: no round left bucket 1`).toBe(true);
      if (k.mode === 'spec') {
        const engineGamma = k.gamma ?? (p.case.adaptiveGamma ? 'auto' : G);
        const most = k.schedule ? G : gammaBound(p.case, engineGamma);
        const fixed = k.schedule === undefined && typeof engineGamma === 'number' ? engineGamma : undefined;
        expect(s.gamma).toBe(k.schedule ? k.schedule[(s.steps - 1) % k.schedule.length] : engineGamma);
        for (const g of got) {
          if (fixed !== undefined) expect(g.stats.drafted).toBe(g.stats.rounds * fixed);
          expect(g.stats.drafted).toBeGreaterThanOrEqual(g.stats.rounds);
          expect(g.stats.drafted).toBeLessThanOrEqual(g.stats.rounds * most);
          expect(g.stats.accepted).toBeLessThanOrEqual(g.stats.drafted);
        }
        const used = Object.entries(s.gammaRounds).map(([g, n]) => [Number(g), n]);
        expect(used.reduce((sum, [, n]) => sum + n, 0)).toBe(s.rounds);
        for (const [g] of used) expect(g >= 1 && g <= most, `gamma ${g} drafted, at most ${most} allowed`).toBe(true);
        if (fixed !== undefined) expect(used.map(([g]) => g)).toEqual([fixed]);
        const mean = s.rounds ? used.reduce((sum, [g, n]) => sum + g * n, 0) / s.rounds : 0;  // a schedule of 'off' only runs no round
        expect(s.meanGamma).toBeCloseTo(mean, 12);
        rounds += s.rounds;
        rejected += s.drafted - s.accepted;
        if (s.accepted > 0 && s.accepted < s.drafted) mixed++;
        if (used.length > 1) varied++;
        k.requests.forEach((r, i) => {
          if (r.prompt.length >= LONG_PROMPT && got[i].stats.accepted < got[i].stats.drafted) longRejected++;
        });
      } else expect(s.rounds).toBe(0);
      extensions += ext.length;
      longest = Math.max(longest, ...k.requests.map((r) => r.prompt.length));
    });
    await forEachSeed(CASES.indexOf(name), { regression: RUNS, fresh: FRESH_RUNS }, (seed, numRuns) =>
      fc.assert(property, { numRuns, seed, endOnFailure: process.env.MD_RUNTIME_SHRINK === undefined }),
    );
    // The runs were not vacuous: speculation happened, drafts were both accepted and rejected within one run
    // (rollbacks), gamma changed within a run, prefix resumes ran, and the AR reference stayed in bucket 1.
    expect(rounds).toBeGreaterThan(0);
    expect(rejected).toBeGreaterThan(0);
    expect(mixed).toBeGreaterThan(0);
    expect(varied).toBeGreaterThan(0);
    expect(extensions).toBeGreaterThan(0);
    expect(Object.keys(reference.stats().bucketRounds)).toEqual(['1']);
    if (p.case.maxSeq > LONG_PROMPT) {
      expect(p.case.model.numLayers).toBeGreaterThanOrEqual(2);
      expect(longest).toBeGreaterThanOrEqual(LONG_PROMPT);
      expect(longRejected).toBeGreaterThan(0);
    }
  });
});
