// Stopping and raggedness in one speculative batch: requests with their own max tokens, stop tokens and
// EOS handling, arriving at different steps, finish in different rounds; in a round, sequences accept
// different numbers of drafted tokens. Whatever the schedule, each request's tokens, logits (bitwise) and
// finish reason are those of the request decoded alone, cut at its first stop token or at max tokens, even
// when the draft window and gamma (a number or 'auto') change between steps. Two requests that decode side
// by side within their first steps put every case in a bucket above 1, where the references (alone) never run.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine as EngineT, Generation } from '../../runtime/node/index.ts';
import { bitwiseMismatch, gammaBound, leftBucketOne, prepareCase, type CaseName, type PreparedCase } from '../support/runtime-cases.ts';
import { Stepper, type Arrival } from '../support/runtime-stepper.ts';
import { forEachSeed } from '../support/seeds.ts';
import { buildRuntime } from './build-runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'md-prop-stop-'));
let Engine: typeof EngineT;

beforeAll(async () => {
  buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const MAX_TOKENS = 40;
const RUNS = 25;
const FRESH_RUNS = 7;

interface RequestCase {
  prompt: number[];
  maxTokens: number;
  /** Stop tokens: indices into the request's own unstopped output (so they do occur), plus random ids. */
  stopAt: number[];
  stopRandom: number[];
  ignoreEos: boolean;
  at: number;
}

function caseArb(p: PreparedCase) {
  const V = p.case.model.vocabSize;
  const G = p.case.gamma;
  const prompt = fc.array(fc.integer({ min: 0, max: V - 1 }), { minLength: 1, maxLength: 120 });
  // Arrives first, never stops early and has tokens left after its prefill (the first companion: also
  // after one more round of at most gamma + 1 tokens).
  const companion = (minTokens: number, maxLength: number): fc.Arbitrary<RequestCase> =>
    fc.record({
      prompt: fc.array(fc.integer({ min: 0, max: V - 1 }), { minLength: 1, maxLength }),
      maxTokens: fc.integer({ min: minTokens, max: MAX_TOKENS }),
      stopAt: fc.constant([]),
      stopRandom: fc.constant([]),
      ignoreEos: fc.constant(true),
      at: fc.constant(0),
    });
  // The second companion's prompt fits in the rows a step feeds beside a one-sequence round (the default
  // step_tokens, the largest bucket's rows, less gamma + 1): it completes in the step that completes the
  // first's or in the next, so the two decode side by side, in a bucket above 1.
  const besideRound = Math.max(...p.case.buckets) * (G + 1) - (G + 1);
  const gamma = fc.oneof(fc.integer({ min: 1, max: p.case.gamma }), fc.constant<'auto'>('auto'));
  const request: fc.Arbitrary<RequestCase> = fc.record({
    prompt,
    maxTokens: fc.integer({ min: 1, max: MAX_TOKENS }),
    stopAt: fc.array(fc.nat({ max: MAX_TOKENS - 1 }), { maxLength: 2 }),
    stopRandom: fc.array(fc.integer({ min: 0, max: V - 1 }), { maxLength: 2 }),
    ignoreEos: fc.boolean(),
    at: fc.oneof(fc.constant(0), fc.nat({ max: 30 })),
  });
  return fc.record({
    requests: fc
      .tuple(companion(G + 3, 120), companion(2, Math.min(120, besideRound)), fc.array(request, { maxLength: 6 }))
      .map(([a, b, more]) => [a, b, ...more]),
    gamma: fc.oneof(fc.integer({ min: 2, max: p.case.gamma }), fc.constant<'auto'>('auto')),
    // Gammas set before every step in turn (none: the engine's gamma throughout).
    schedule: fc.option(fc.array(gamma, { minLength: 2, maxLength: 5 }), { nil: undefined }),
    maxBatch: fc.integer({ min: 2, max: 8 }),
    // Short draft windows: the draft is often wrong, so acceptance differs between sequences. The window
    // also changes between steps: the draft only steers acceptance, so the output must not notice.
    window: fc.integer({ min: 1, max: 48 }),
    windowChanges: fc.array(fc.record({ at: fc.nat({ max: 40 }), window: fc.integer({ min: 0, max: 600 }) }), { maxLength: 4 }),
    // The model's eos_token_id for this run: a token of a request's output, so that EOS stops really happen.
    eosFrom: fc.record({ request: fc.nat(), index: fc.nat() }),
  });
}

/** What a request must produce: its unstopped output cut after the first stop token (or EOS), or at max. */
function expected(full: Generation, r: RequestCase, stops: number[], eos: number): { n: number; reason: 'stop' | 'length' } {
  const stopping = new Set([...stops, ...(r.ignoreEos ? [] : [eos])]);
  const i = full.tokens.slice(0, r.maxTokens).findIndex((t) => stopping.has(t));
  return i >= 0 ? { n: i + 1, reason: 'stop' } : { n: r.maxTokens, reason: 'length' };
}

const CASES: CaseName[] = ['tiedBf16', 'qwen2'];

describe.each(CASES)('stopping and raggedness in a speculative batch: %s', (name) => {
  it('each request equals itself decoded alone, cut at its stop token or max tokens', async () => {
    const p = await prepareCase(name, root);
    const configFile = join(p.modelDir, 'config.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8'));
    const reference = await Engine.create(p.modelDir, p.library, { mode: 'ar', maxBatch: 1, keepLogits: true });
    let raggedRounds = 0;
    let splitFinishes = 0;
    let stoppedByToken = 0;
    let stoppedByEos = 0;
    let mixed = 0;
    try {
      const property = fc.asyncProperty(caseArb(p), async (k) => {
        // Unstopped, alone, autoregressive: the output every request is a prefix of.
        const full: Generation[] = [];
        for (const r of k.requests) full.push(await reference.generate(r.prompt, { maxTokens: MAX_TOKENS, ignoreEos: true }));
        // Taken from within the max tokens of a request that honours EOS, where there is one.
        const honours = k.requests.findIndex((r) => !r.ignoreEos);
        const from = honours >= 0 ? honours : k.eosFrom.request % k.requests.length;
        const eosId = full[from].tokens[k.eosFrom.index % k.requests[from].maxTokens];
        writeFileSync(configFile, JSON.stringify({ ...config, eos_token_id: eosId })); // read by Stepper.create
        const stops = k.requests.map((r, i) => [...r.stopAt.map((j) => full[i].tokens[j]), ...r.stopRandom]);
        const arrivals: Arrival[] = k.requests.map((r, i) => ({
          prompt: r.prompt,
          opts: { maxTokens: r.maxTokens, stopTokens: stops[i], ignoreEos: r.ignoreEos },
          at: r.at,
        }));
        const s = await Stepper.create(p.modelDir, p.library, p.case.model.vocabSize, { mode: 'spec', gamma: k.gamma, maxBatch: k.maxBatch });
        try {
          s.setParam('draft', 'kv_window', k.window);
          const schedule = k.schedule;
          const gammaAt = (step: number) => (schedule ? schedule[step % schedule.length] : k.gamma);
          const run = await s.run(arrivals, (step) => {
            for (const w of k.windowChanges) if (w.at === step) s.setParam('draft', 'kv_window', w.window);
            if (schedule) s.setGamma(gammaAt(step));
          });
          k.requests.forEach((r, i) => {
            const got = run.requests[i];
            const want = expected(full[i], r, stops[i], eosId);
            expect(got.reason, `request ${i}`).toBe(want.reason);
            const why = bitwiseMismatch(got, full[i], 0, want.n);
            if (why) throw new Error(`request ${i} (maxTokens ${r.maxTokens}, stops [${stops[i]}], ignoreEos ${r.ignoreEos}): ${why}`);
            expect(got.stats!.generated).toBe(want.n);
            for (const [step, n] of got.roundTokens) expect(n, `step ${step}`).toBeLessThanOrEqual(gammaBound(p.case, gammaAt(step)) + 1);
            if (want.reason === 'stop') {
              if (stops[i].includes(got.tokens[want.n - 1])) stoppedByToken++;
              else stoppedByEos++;
            }
          });
          // A round where two sequences still running accepted different numbers of drafted tokens.
          for (const step of run.decodeSteps) {
            const counts = new Set(run.requests.map((r) => r.roundTokens.get(step)).filter((n) => n !== undefined));
            if (counts.size > 1) raggedRounds++;
          }
          if (new Set(run.requests.map((r) => r.finishedAt)).size > 1) splitFinishes++;
          if (run.stats.accepted > 0 && run.stats.accepted < run.stats.drafted) mixed++;
          expect(run.stats.freePages).toBe(k.maxBatch * p.plan.pagesPerSeq);
          expect(leftBucketOne(run.stats), `buckets ${JSON.stringify(run.stats.bucketRounds)}`).toBe(true);
        } finally {
          s.close();
        }
      });
      await forEachSeed(100 + CASES.indexOf(name), { regression: RUNS, fresh: FRESH_RUNS }, (seed, numRuns) => fc.assert(property, { numRuns, seed }));
      expect(Object.keys(reference.stats().bucketRounds)).toEqual(['1']);
    } finally {
      reference.close();
    }
    expect(raggedRounds).toBeGreaterThan(0);
    expect(splitFinishes).toBeGreaterThan(0);
    expect(stoppedByToken).toBeGreaterThan(0);
    expect(stoppedByEos).toBeGreaterThan(0);
    expect(mixed).toBeGreaterThan(0);
  });
});
