// Invariant 1 also says "whatever the thread count": the same random batches decoded in child processes
// with 1 and 3 OpenMP threads (speculative, batched) and in this process (autoregressive, one request at a
// time, the default thread count) must agree bit for bit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine as EngineT } from '../../runtime/node/index.ts';
import { runInChild, type ChildJob } from '../support/runtime-child.ts';
import { bitwiseMismatch, prepareCase, withEngine, type CaseName } from '../support/runtime-cases.ts';
import { replayHint, seedsFor } from '../support/seeds.ts';
import { buildRuntime } from './build-runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'md-prop-threads-'));
let Engine: typeof EngineT;

beforeAll(async () => {
  buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Jobs drawn from the regression seed and from this process's fresh seed. */
const JOBS = { regression: 3, fresh: 2 } as const;

describe.each<CaseName>(['long', 'qwen2'])('thread-count invariance: %s', (name) => {
  it('1 thread, 3 threads and the default decode the same bits', async () => {
    const p = await prepareCase(name, root);
    const c = p.case;
    const request = (minTokens: number) =>
      fc.record({
        prompt: fc.integer({ min: 1, max: c.maxSeq > 1024 ? 1200 : 300 }).chain((n) => fc.array(fc.nat({ max: c.model.vocabSize - 1 }), { minLength: n, maxLength: n })),
        maxTokens: fc.integer({ min: minTokens, max: 24 }),
      });
    const job = fc.record({
      // The first two decode side by side (a bucket above 1); the AR reference decodes alone.
      requests: fc.tuple(request(2), request(2), fc.array(request(1), { maxLength: 6 })).map(([a, b, more]) => [a, b, ...more]),
      gamma: fc.oneof(fc.integer({ min: 1, max: c.gamma }), fc.constant<'auto'>('auto')),
      prefillChunk: fc.integer({ min: 1, max: 8 * (c.gamma + 1) }),
      window: fc.integer({ min: 1, max: 64 }),
    });
    const drawn = seedsFor(300 + c.maxSeq).flatMap(({ kind, seed }) => fc.sample(job, { seed, numRuns: JOBS[kind] }).map((k) => ({ ...k, kind })));
    const jobs: ChildJob[] = drawn.map((k) => ({
      modelDir: p.modelDir,
      library: p.library,
      opts: { mode: 'spec', gamma: k.gamma, prefillChunk: k.prefillChunk },
      draft: { kv_window: k.window },
      target: {},
      requests: k.requests,
    }));
    const one = runInChild(jobs, 1);
    const three = runInChild(jobs, 3);
    await withEngine(Engine, p, { mode: 'ar', maxBatch: 1 }, async (e) => {
      for (const [j, k] of drawn.entries()) {
        for (const [i, r] of k.requests.entries()) {
          const want = await e.generate(r.prompt, { maxTokens: r.maxTokens, ignoreEos: true });
          const which = `job ${j} [${replayHint(k.kind)}] request ${i}`;
          expect(bitwiseMismatch(one[j][i], want), `${which}, 1 thread`).toBeUndefined();
          expect(bitwiseMismatch(three[j][i], want), `${which}, 3 threads`).toBeUndefined();
        }
      }
    });
  });
});
