// An independent check of what the bitwise properties cannot see (that the engine computes the right
// thing, not just the same thing twice): on random fp32 models, the logits of every emitted token against
// the float64 reference forward (test/reference/llama.ts), which shares no code with the kernels.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine as EngineT } from '../../runtime/node/index.ts';
import { loadReferenceModel } from '../reference/llama.ts';
import { prepareCase, withEngine, type CaseName } from '../support/runtime-cases.ts';
import { forEachSeed } from '../support/seeds.ts';
import { buildRuntime } from './build-runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'md-prop-ref-'));
let Engine: typeof EngineT;

beforeAll(async () => {
  buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const RUNS = 5;
const FRESH_RUNS = 2;
const TOLERANCE = 1e-4;

// The fp32 cases: MHA with linear rope scaling and Qwen2 (q/k/v biases) with GQA, two random models each;
// Mistral with a sliding window narrower than the prompts.
const CASES: [CaseName, number][] = [
  ['mhaLinear', 101],
  ['mhaLinear', 102],
  ['qwen2', 201],
  ['qwen2', 202],
  ['mistral', 301],
];

describe.each(CASES)('engine logits vs the float64 reference: %s, model seed %i', (name, modelSeed) => {
  it(`relative error < ${TOLERANCE} at every emitted position`, async () => {
    const p = await prepareCase(name, root, modelSeed);
    const ref = loadReferenceModel(p.modelDir);
    const V = p.case.model.vocabSize;
    let worst = 0;
    await withEngine(Engine, p, { mode: 'spec' }, async (e) => {
      const property = fc.asyncProperty(
        // Unbiased lengths: fast-check's small-size bias would keep every prompt inside Mistral's window.
        fc.noBias(fc.array(fc.integer({ min: 0, max: V - 1 }), { minLength: 1, maxLength: 150 })),
        fc.integer({ min: 1, max: 16 }),
        async (prompt, maxTokens) => {
          const g = await e.generate(prompt, { maxTokens, ignoreEos: true });
          // Teacher-forced on the engine's own tokens, so a near-tie in argmax cannot derail the comparison.
          const want = ref.forward([...prompt, ...g.tokens.slice(0, -1)]);
          g.tokens.forEach((_, i) => {
            const row = want[prompt.length - 1 + i];
            let scale = 0;
            let diff = 0;
            for (let v = 0; v < V; v++) {
              scale = Math.max(scale, Math.abs(row[v]));
              diff = Math.max(diff, Math.abs(row[v] - g.logits![i][v]));
            }
            const rel = diff / scale;
            worst = Math.max(worst, rel);
            if (!(rel < TOLERANCE)) throw new Error(`token ${i} (position ${prompt.length + i}): relative error ${rel}`);
          });
        },
      );
      await forEachSeed(modelSeed, { regression: RUNS, fresh: FRESH_RUNS }, (seed, numRuns) => fc.assert(property, { numRuns, seed }));
    });
    // fp32 storage and fp32 math: far inside the tolerance, and not trivially zero (the oracle is float64).
    expect(worst).toBeGreaterThan(0);
  });
});
