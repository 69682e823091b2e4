// Speculative rejection sampling end to end (the runtime case `mistral`, built with the rejection verifier):
// every emitted token, speculative or autoregressive, is distributed as the target model's own sample from
// the logits it was emitted with. Checked with the randomized probability integral transform: for a token t
// drawn from p, U = P(< t) + V * p(t) (V uniform, from the test's own generator) is uniform on (0, 1), and
// the U of successive tokens are independent, so thousands of them pooled fall evenly into 20 bins; the
// chi-square statistic (19 degrees of freedom) must stay below 64, which a correct sampler exceeds with
// probability 8.9e-7. Seeds are fixed, so the outcome is the same on every run. The draft reads a 2-position
// window, so acceptance is far from 1 and rejections and resamples are most of the work. Also: a seeded
// request gives the same tokens alone or batched (at a fixed gamma), and greedy requests on the same
// module verify greedily (bitwise the autoregressive output).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowDistribution, type SamplingParams } from '../../model/sampling.ts';
import type { Engine as EngineT, EngineOptions, Generation } from '../../runtime/node/index.ts';
import { mulberry32 } from '../harness/kernels/attention-case.ts';
import { bitwiseMismatch, prepareCase, withEngine, type PreparedCase } from '../support/runtime-cases.ts';
import { buildRuntime } from './build-runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'md-rejection-'));
let Engine: typeof EngineT;
let p: PreparedCase;

beforeAll(async () => {
  buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
  p = await prepareCase('mistral', root);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const REQUESTS = 256;
const MAX_TOKENS = 24;
const BINS = 20;
/** chi-square(19) exceeds 64 with probability 8.9e-7. */
const CRITICAL = 64;
/** A standard normal exceeds 5 in absolute value with probability 5.7e-7. */
const Z_CRITICAL = 5;

/** Short random prompts, one per request, from a fixed seed. */
function prompts(n: number, V: number, seed: number): number[][] {
  const rnd = mulberry32(seed);
  return Array.from({ length: n }, () => Array.from({ length: 1 + Math.floor(rnd() * 20) }, () => Math.floor(rnd() * V)));
}

async function decode(opts: EngineOptions, sampling: SamplingParams, ps: readonly number[][], seed0: number): Promise<Generation[]> {
  return withEngine(Engine, p, opts, async (e) => {
    e.setParam('draft', 'kv_sink', 0);
    e.setParam('draft', 'kv_window', 2);
    return Promise.all(ps.map((pr, i) => e.generate(pr, { maxTokens: MAX_TOKENS, ignoreEos: true, ...sampling, seed: seed0 + i })));
  });
}

/**
 * Two statistics of the tokens against the distributions of their rows: the chi-square of their randomized
 * PIT values over BINS equal bins, and the z-score of the summed probability p(t) of each drawn token
 * against its expectation sum_i p_i^2 (drawing from another distribution, e.g. accepting the draft's tokens
 * too often, lowers it).
 */
function fit(gens: readonly Generation[], sampling: SamplingParams, seed: number): { chi2: number; z: number; n: number } {
  const rnd = mulberry32(seed);
  const bins = new Array<number>(BINS).fill(0);
  let n = 0;
  let excess = 0;
  let variance = 0;
  for (const g of gens) {
    g.tokens.forEach((t, j) => {
      const dist = rowDistribution(g.logits![j], sampling);
      let below = 0;
      for (let i = 0; i < t; i++) below += dist[i];
      expect(dist[t], `token ${t} has probability 0`).toBeGreaterThan(0);
      const u = Math.min(below + rnd() * dist[t], 1 - 1e-12);
      bins[Math.floor(u * BINS)]++;
      const m2 = dist.reduce((s, x) => s + x * x, 0);
      const m3 = dist.reduce((s, x) => s + x * x * x, 0);
      excess += dist[t] - m2;
      variance += m3 - m2 * m2;
      n++;
    });
  }
  const e = n / BINS;
  return { chi2: bins.reduce((s, o) => s + (o - e) ** 2 / e, 0), z: excess / Math.sqrt(variance), n };
}

const SETTINGS: SamplingParams[] = [
  { temperature: 1.5, topK: 0, topP: 1, minP: 0 },
  { temperature: 0.7, topK: 40, topP: 0.9, minP: 0.02 },
];

describe('rejection sampling matches the target distribution', () => {
  it.each(SETTINGS)('speculative, and autoregressive as a control, pass the PIT chi-square: %o', async (sampling) => {
    expect(p.plan.deployment.verify.mode).toBe('sample');
    const V = p.case.model.vocabSize;
    const ps = prompts(REQUESTS, V, 31);
    const spec = await decode({ mode: 'spec', gamma: 4, maxBatch: 8 }, sampling, ps, 5000);
    const stats = spec.reduce((s, g) => ({ drafted: s.drafted + g.stats.drafted, accepted: s.accepted + g.stats.accepted }), { drafted: 0, accepted: 0 });
    // Rejections were common: the residual draws are a large share of the tokens tested.
    expect(stats.accepted / stats.drafted).toBeGreaterThan(0.05);
    expect(stats.accepted / stats.drafted).toBeLessThan(0.8);
    const s = fit(spec, sampling, 1);
    expect(s.n).toBe(REQUESTS * MAX_TOKENS);
    expect(s.chi2, `speculative chi-square ${s.chi2} over ${s.n} tokens`).toBeLessThan(CRITICAL);
    expect(Math.abs(s.z), `speculative z ${s.z}`).toBeLessThan(Z_CRITICAL);
    const ar = await decode({ mode: 'ar', maxBatch: 8 }, sampling, ps, 5000);
    const a = fit(ar, sampling, 2);
    expect(a.chi2, `autoregressive chi-square ${a.chi2}`).toBeLessThan(CRITICAL);
    expect(Math.abs(a.z), `autoregressive z ${a.z}`).toBeLessThan(Z_CRITICAL);
  }, 300_000);

  it('a seeded request gives the same tokens alone and batched (fixed gamma); greedy requests verify greedily', async () => {
    const V = p.case.model.vocabSize;
    const ps = prompts(6, V, 32);
    const sampling = SETTINGS[0];
    const batched = await decode({ mode: 'spec', gamma: 3, maxBatch: 8 }, sampling, ps, 9);
    for (const [i, pr] of ps.entries()) {
      const [alone] = await decode({ mode: 'spec', gamma: 3, maxBatch: 1 }, sampling, [pr], 9 + i);
      expect(alone.tokens, `request ${i}`).toEqual(batched[i].tokens);
    }
    const greedy = { temperature: 0, topK: 0, topP: 1, minP: 0 };
    const gs = await decode({ mode: 'spec', gamma: 4, maxBatch: 8 }, greedy, ps, 0);
    const ga = await decode({ mode: 'ar', maxBatch: 1 }, greedy, ps, 0);
    gs.forEach((g, i) => expect(bitwiseMismatch(g, ga[i])).toBeUndefined());
  }, 300_000);
});
