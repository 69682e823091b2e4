// Sampled decoding through the engine (autoregressive here; speculative sample-and-match in
// property-sampling.test.ts): each emitted token is model/sampling.ts's draw from the logits it was emitted
// with, under the request's parameters and seed at the position that produced it; a seed replays, batched
// or alone; a request without a seed gets one, reports it, and that seed replays it; temperature 0 is the
// greedy output; and invalid parameters are refused before any work, through Node and the C API.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleRow, type SamplingParams } from '../../model/sampling.ts';
import type { Engine as EngineT, Generation, RequestOptions } from '../../runtime/node/index.ts';
import { prepareCase, withEngine, type PreparedCase } from '../support/runtime-cases.ts';
import { buildRuntime, type RuntimeBuild } from './build-runtime.ts';
import { execFileSync } from 'node:child_process';

const root = mkdtempSync(join(tmpdir(), 'md-sampling-'));
let rt: RuntimeBuild;
let Engine: typeof EngineT;
let p: PreparedCase;

beforeAll(async () => {
  rt = buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
  p = await prepareCase('tiedBf16', root);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const prompts = [
  [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5],
  [2, 7, 1, 8, 2, 8],
  [1, 4, 1, 4, 2, 1, 3, 5, 6, 2, 3, 7, 3, 0, 9, 5, 0, 4, 8, 8],
  [9],
];
const MAX_TOKENS = 24;

const params = (o: Partial<SamplingParams>): SamplingParams => ({ temperature: 1, topK: 0, topP: 1, minP: 0, ...o });
const opts = (s: SamplingParams, seed?: number): RequestOptions => ({
  maxTokens: MAX_TOKENS,
  ignoreEos: true,
  temperature: s.temperature,
  topK: s.topK,
  topP: s.topP,
  minP: s.minP,
  ...(seed === undefined ? {} : { seed }),
});

/** Token j came from logits[j], the row at position prompt.length - 1 + j. */
function drawsMatch(prompt: readonly number[], g: Generation, s: SamplingParams): void {
  expect(g.logits).toHaveLength(g.tokens.length);
  g.tokens.forEach((t, j) => expect(t, `token ${j}`).toBe(sampleRow(g.logits![j], s, g.seed, prompt.length - 1 + j)));
}

const SETTINGS: SamplingParams[] = [
  params({ temperature: 1 }),
  params({ temperature: 0.7, topK: 20 }),
  params({ temperature: 1.3, topP: 0.9 }),
  params({ temperature: 0.5, minP: 0.05 }),
  params({ temperature: 1e-6 }),
  params({ temperature: 2, topK: 1 }),
];

describe('autoregressive sampling', () => {
  it("every token is the reference's draw from its logits at its position, under the request's seed", async () => {
    await withEngine(Engine, p, { mode: 'ar' }, async (e) => {
      for (const [i, s] of SETTINGS.entries()) {
        const gens = await Promise.all(prompts.map((pr, k) => e.generate(pr, opts(s, 1000 * i + k))));
        gens.forEach((g, k) => {
          expect(g.seed).toBe(1000 * i + k);
          drawsMatch(prompts[k], g, s);
        });
      }
    });
  });

  it('a seed replays: alone, in another batch, in another bucket; other seeds differ; temperature 0 is greedy', async () => {
    const s = params({ temperature: 0.9, topP: 0.95 });
    const batched = await withEngine(Engine, p, { mode: 'ar' }, (e) => Promise.all(prompts.map((pr, k) => e.generate(pr, opts(s, 77 + k)))));
    const alone = await withEngine(Engine, p, { mode: 'ar', maxBatch: 1 }, async (e) => {
      const out: Generation[] = [];
      for (const [k, pr] of prompts.entries()) out.push(await e.generate(pr, opts(s, 77 + k)));
      return out;
    });
    alone.forEach((g, k) => expect(g.tokens, `prompt ${k}`).toEqual(batched[k].tokens));
    await withEngine(Engine, p, { mode: 'ar' }, async (e) => {
      const other = await Promise.all(prompts.map((pr, k) => e.generate(pr, opts(s, 9000 + k))));
      expect(other.some((g, k) => g.tokens.join() !== batched[k].tokens.join())).toBe(true);
      const greedy = await Promise.all(prompts.map((pr) => e.generate(pr, { maxTokens: MAX_TOKENS, ignoreEos: true })));
      const zero = await Promise.all(prompts.map((pr, k) => e.generate(pr, opts(params({ temperature: 0, topK: 3, topP: 0.5 }), 5 + k))));
      zero.forEach((g, k) => expect(g.tokens).toEqual(greedy[k].tokens));
    });
  });

  it('a request without a seed gets one, reports it, and that seed replays it', async () => {
    const s = params({ temperature: 1 });
    await withEngine(Engine, p, { mode: 'ar' }, async (e) => {
      const [a, b] = await Promise.all([e.generate(prompts[0], opts(s)), e.generate(prompts[0], opts(s))]);
      for (const g of [a, b]) expect(Number.isSafeInteger(g.seed) && g.seed >= 0).toBe(true);
      expect(a.seed).not.toBe(b.seed);
      const replay = await e.generate(prompts[0], opts(s, a.seed));
      expect(replay.tokens).toEqual(a.tokens);
      drawsMatch(prompts[0], a, s);
    });
  });
});

describe('invalid sampling parameters are refused before any work', () => {
  const BAD: [Partial<RequestOptions>, string][] = [
    [{ temperature: -1 }, 'request: temperature must be a finite number >= 0 (0 is greedy), got -1'],
    [{ temperature: Number.NaN }, 'request: temperature must be a finite number >= 0 (0 is greedy), got NaN'],
    [{ temperature: Infinity }, 'request: temperature must be a finite number >= 0 (0 is greedy), got Infinity'],
    [{ topK: -1 }, 'request: top_k must be an integer >= 0 (0 keeps every token), got -1'],
    [{ topK: 2.5 }, 'request: top_k must be an integer >= 0 (0 keeps every token), got 2.5'],
    [{ topP: 0 }, 'request: top_p must be in (0, 1] (1 keeps every token), got 0'],
    [{ topP: 1.5 }, 'request: top_p must be in (0, 1] (1 keeps every token), got 1.5'],
    [{ topP: Number.NaN }, 'request: top_p must be in (0, 1] (1 keeps every token), got NaN'],
    [{ minP: -0.1 }, 'request: min_p must be in [0, 1] (0 keeps every token), got -0.1'],
    [{ minP: 2 }, 'request: min_p must be in [0, 1] (0 keeps every token), got 2'],
    [{ seed: -1 }, 'request: seed must be an integer in [0, 2^53), got -1'],
    [{ seed: 2 ** 53 }, 'request: seed must be an integer in [0, 2^53), got 9007199254740992'],
    [{ seed: 1.5 }, 'request: seed must be an integer in [0, 2^53), got 1.5'],
  ];

  it('Node: each is a synchronous error naming it, and a request in flight decodes undisturbed', async () => {
    const s = params({ temperature: 0.8 });
    const want = await withEngine(Engine, p, { mode: 'ar' }, (e) => e.generate(prompts[0], opts(s, 4)));
    await withEngine(Engine, p, { mode: 'ar' }, async (e) => {
      const running = e.generate(prompts[0], opts(s, 4));
      for (const [bad, msg] of BAD) expect(() => e.generate(prompts[1], { maxTokens: 4, ...bad }), JSON.stringify(bad)).toThrow(msg);
      expect((await running).tokens).toEqual(want.tokens);
      expect(e.stats().generated).toBe(MAX_TOKENS);
    });
  });

  it('Node: the engine itself refuses what the wrapper would (the addon, below the wrapper)', async () => {
    const { createRequire } = await import('node:module');
    const { ADDON_PATH } = await import('../../runtime/node/index.ts');
    const addon = createRequire(import.meta.url)(ADDON_PATH) as import('../../runtime/node/index.ts').Addon;
    const native = await addon.create(p.modelDir, p.library, { mode: 'ar' });
    try {
      const engineSide: [Partial<RequestOptions>, string][] = [
        [{ temperature: -1 }, 'request: temperature must be a finite number >= 0 (0 is greedy), got -1'],
        [{ temperature: Number.NaN }, 'request: temperature must be a finite number >= 0 (0 is greedy), got NaN'],
        [{ topK: -1 }, 'request: top_k must be an integer >= 0 (0 keeps every token), got -1'],
        [{ topP: 0 }, 'request: top_p must be in (0, 1] (1 keeps every token), got 0'],
        [{ minP: 1.5 }, 'request: min_p must be in [0, 1] (0 keeps every token), got 1.5'],
        [{ seed: -1 }, 'option seed must be an integer in [0, 2^53), got -1'],
        [{ temperature: 'hot' as unknown as number }, 'option temperature must be a number'],
      ];
      for (const [bad, msg] of engineSide) expect(() => native.addRequest(prompts[1], { maxTokens: 4, ...bad }), JSON.stringify(bad)).toThrow(msg);
      expect(native.live()).toBe(0);
    } finally {
      native.close();
    }
  });

  it('a speculative engine on a greedy module refuses temperature > 0, naming the verifier; temperature 0 is fine', async () => {
    await withEngine(Engine, p, { mode: 'spec' }, async (e) => {
      expect(() => e.generate(prompts[0], { maxTokens: 4, temperature: 0.7 })).toThrow(
        "request: temperature 0.7 samples, but this module's verifier 'greedy' accepts only the target's argmax; decode sampled requests in ar mode, or build the module with verify: sampleAndMatch",
      );
      expect((await e.generate(prompts[0], { maxTokens: 4, temperature: 0, topK: 5 })).tokens).toHaveLength(4);
    });
  });

  it('C API: each is -1 with the message, nothing queued; a seeded request replays and reports its seed', () => {
    const out = execFileSync(rt.capi, ['sampling', p.modelDir, p.library, ...prompts[0].map(String)], { encoding: 'utf8' });
    expect(out.trim().split('\n').pop()).toBe('capi sampling ok');
  });
});
