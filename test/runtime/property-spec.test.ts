// The central claim of MagicDec, as a property over random tiny models, prompts, batches, gammas, prefill
// chunks, KV pools and draft/target runtime params: self-speculative decoding emits exactly the tokens of
// autoregressive decoding, and the logits of every emitted token are bitwise equal (docs/ARCHITECTURE.md, invariant 1).
// In the same runs, requests whose prompt is an earlier prompt plus a prefix of its output check that a
// position computed in a prefill chunk equals the same position computed by decoding, bit for bit.
// Knobs: MD_RUNTIME_PROPERTY_RUNS (runs per case), MD_RUNTIME_PROPERTY_SEED / MD_RUNTIME_MODULE_SEED (other
// draws), MD_RUNTIME_SHRINK=1 (shrink a failure to a minimal case; off by default, every shrink step decodes).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine as EngineT, Generation } from '../../runtime/node/index.ts';
import { bitwiseMismatch, pagesFor, prepareCase, PROPERTY_SEED, withEngine, type CaseName, type PreparedCase } from '../support/runtime-cases.ts';
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

interface Request {
  prompt: number[];
  maxTokens: number;
}

interface Case {
  requests: Request[];
  /** Extensions: request `of` re-run with `take` of its reference output appended to its prompt. */
  extensions: { of: number; take: number }[];
  mode: 'spec' | 'ar';
  gamma: number;
  maxBatch: number;
  prefillChunk: number;
  /** Extra KV pages over the one request that needs most; undefined: the default pool. */
  spareKvPages?: number;
  draft: Record<string, number>;
  target: Record<string, number>;
}

function caseArb(p: PreparedCase): fc.Arbitrary<Case> {
  const c = p.case;
  const V = c.model.vocabSize;
  const G = c.gamma;
  const maxRows = Math.max(...c.buckets) * (G + 1);
  // Mostly short prompts; some that span split-KV chunks; on the long case a few of up to ~2K tokens.
  const longest = c.maxSeq - MAX_TOKENS - G;
  const length = fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 1, max: 40 }) },
    { weight: 3, arbitrary: fc.integer({ min: 41, max: Math.min(300, longest) }) },
    ...(longest > 1000 ? [{ weight: 1, arbitrary: fc.integer({ min: 1000, max: longest }) }] : []),
  );
  const request = fc.record({
    prompt: length.chain((n) => fc.array(fc.integer({ min: 0, max: V - 1 }), { minLength: n, maxLength: n })),
    maxTokens: fc.integer({ min: 1, max: MAX_TOKENS }),
  });
  // Window >= the context makes the draft exact (acceptance 1); small windows make it wrong often; 0 and
  // negative ones leave the draft rows nothing to attend to (their attention output is 0).
  const window = fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 65, max: c.maxSeq + 64 }), fc.integer({ min: -2, max: 0 }));
  const draft =
    c.draft === 'streaming'
      ? fc.record({ kv_sink: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 40 })), kv_window: window })
      : fc.record({ kv_window: window });
  // A target window of 0 masks everything: a degenerate model, but still the same one for AR and spec.
  const target = c.target === 'sliding' ? fc.record({ attn_window: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constant(c.maxSeq), fc.constant(0)) }) : fc.constant({});
  return fc
    .record({
      requests: fc.array(request, { minLength: 1, maxLength: 8 }),
      extensionSeeds: fc.array(fc.record({ of: fc.nat(), take: fc.nat() }), { maxLength: 3 }),
      mode: fc.constantFrom<'spec' | 'ar'>('spec', 'spec', 'spec', 'ar'),
      gamma: fc.integer({ min: 1, max: G }),
      maxBatch: fc.integer({ min: 1, max: 8 }),
      prefillChunk: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: maxRows }), fc.constant(maxRows)),
      spareKvPages: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
      draft,
      target,
    })
    .map(({ extensionSeeds, ...k }) => ({
      ...k,
      // take >= 1 so the extended prompt really holds decoded tokens; take < maxTokens so one is left to emit.
      extensions: extensionSeeds
        .map(({ of, take }) => ({ of: of % k.requests.length, take }))
        .filter(({ of }) => k.requests[of].maxTokens > 1)
        .map(({ of, take }) => ({ of, take: 1 + (take % (k.requests[of].maxTokens - 1)) })),
    }));
}

function setParams(e: EngineT, k: Case): void {
  for (const [key, v] of Object.entries(k.draft)) e.setParam('draft', key, v);
  for (const [key, v] of Object.entries(k.target)) e.setParam('target', key, v);
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

  it('for random prompts, batches, gammas, prefill chunks, KV pools and runtime params', async () => {
    let rounds = 0;
    let rejected = 0;
    let extensions = 0;
    let longest = 0;
    await fc.assert(
      fc.asyncProperty(caseArb(p), async (k) => {
        for (const [key, v] of Object.entries(k.target)) reference.setParam('target', key, v);
        const want: Generation[] = [];
        for (const r of k.requests) want.push(await reference.generate(r.prompt, { maxTokens: r.maxTokens, ignoreEos: true }));
        const ext = k.extensions.map(({ of, take }) => ({
          prompt: [...k.requests[of].prompt, ...want[of].tokens.slice(0, take)],
          maxTokens: k.requests[of].maxTokens - take,
        }));
        const overshoot = k.mode === 'spec' ? k.gamma : 0;
        const need = Math.max(...k.requests.map((r) => pagesFor(p.case, r.prompt.length, r.maxTokens, overshoot)));
        const opts = {
          mode: k.mode,
          gamma: k.gamma,
          maxBatch: k.maxBatch,
          prefillChunk: k.prefillChunk,
          ...(k.spareKvPages === undefined ? {} : { kvPages: need + k.spareKvPages }),
        };
        await withEngine(Engine, p, opts, async (e) => {
          setParams(e, k);
          const got = await Promise.all([...k.requests, ...ext].map((r) => e.generate(r.prompt, { maxTokens: r.maxTokens, ignoreEos: true })));
          k.requests.forEach((r, i) => {
            const why = bitwiseMismatch(got[i], want[i]);
            if (why) throw new Error(`request ${i} (prompt ${r.prompt.length}, maxTokens ${r.maxTokens}): ${why}`);
          });
          k.extensions.forEach(({ of, take }, j) => {
            const why = bitwiseMismatch(got[k.requests.length + j], want[of], take);
            if (why) throw new Error(`request ${of} resumed after ${take} of its tokens (prefill vs decode): ${why}`);
          });
          const s = e.stats();
          expect(s.freePages).toBe(opts.kvPages ?? k.maxBatch * p.plan.pagesPerSeq);
          if (k.mode === 'spec') {
            for (const g of got) {
              expect(g.stats.drafted).toBe(g.stats.rounds * k.gamma);
              expect(g.stats.accepted).toBeLessThanOrEqual(g.stats.drafted);
            }
            rounds += s.rounds;
            rejected += s.drafted - s.accepted;
          } else expect(s.rounds).toBe(0);
        });
        extensions += ext.length;
        longest = Math.max(longest, ...k.requests.map((r) => r.prompt.length));
      }),
      { numRuns: RUNS, seed: PROPERTY_SEED + CASES.indexOf(name), endOnFailure: process.env.MD_RUNTIME_SHRINK === undefined },
    );
    // The runs were not vacuous: speculation happened, drafts were rejected (rollbacks), prefix resumes ran.
    expect(rounds).toBeGreaterThan(0);
    expect(rejected).toBeGreaterThan(0);
    expect(extensions).toBeGreaterThan(0);
    if (p.case.maxSeq > 1024) expect(longest).toBeGreaterThanOrEqual(1000);
  });
});
