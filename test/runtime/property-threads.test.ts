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
import { bitwiseMismatch, prepareCase, PROPERTY_SEED, withEngine, type CaseName } from '../support/runtime-cases.ts';
import { buildRuntime } from './build-runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'md-prop-threads-'));
let Engine: typeof EngineT;

beforeAll(async () => {
  buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const JOBS = 4;

describe.each<CaseName>(['long', 'qwen2'])('thread-count invariance: %s', (name) => {
  it('1 thread, 3 threads and the default decode the same bits', async () => {
    const p = await prepareCase(name, root);
    const c = p.case;
    const job = fc.record({
      requests: fc.array(
        fc.record({
          prompt: fc.integer({ min: 1, max: c.maxSeq > 1024 ? 1200 : 300 }).chain((n) => fc.array(fc.nat({ max: c.model.vocabSize - 1 }), { minLength: n, maxLength: n })),
          maxTokens: fc.integer({ min: 1, max: 24 }),
        }),
        { minLength: 1, maxLength: 8 },
      ),
      gamma: fc.integer({ min: 1, max: c.gamma }),
      prefillChunk: fc.integer({ min: 1, max: 8 * (c.gamma + 1) }),
      window: fc.integer({ min: 1, max: 64 }),
    });
    const drawn = fc.sample(job, { seed: PROPERTY_SEED + 300 + c.maxSeq, numRuns: JOBS });
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
          expect(bitwiseMismatch(one[j][i], want), `job ${j} request ${i}, 1 thread`).toBeUndefined();
          expect(bitwiseMismatch(three[j][i], want), `job ${j} request ${i}, 3 threads`).toBeUndefined();
        }
      }
    });
  });
});
