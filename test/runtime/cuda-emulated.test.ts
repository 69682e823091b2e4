// The engine's CUDA path, end to end through the Node API, without a GPU: a CUDA sm_90 bf16 module built
// for the SIMT emulator (codegen/build.ts `emulate`) is loaded by the runtime like any module, runs on the
// host-memory device (runtime/src/device.h) with the same uploads, device-side drafting and verification
// and read-backs as on a GPU, and speculative decoding emits the autoregressive tokens with bitwise-equal
// logits over prompts crossing pages, batches in two buckets, gammas 1..3 and 'auto', and short prefill
// chunks. The emulator is slow (every CTA's threads are fibers): a two-layer model, short prompts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emitCuda } from '../../codegen/backends/cuda.ts';
import { buildModule } from '../../codegen/build.ts';
import { planModule } from '../../codegen/plan.ts';
import type { DeploymentIR } from '../../codegen/spec.ts';
import { resolveRandomConfig, writeRandomModel } from '../../model/random.ts';
import type { Engine as EngineT, EngineOptions, Generation } from '../../runtime/node/index.ts';
import { loadReferenceModel } from '../reference/llama.ts';
import { attentions, makeDeployment, policies } from '../support/deployments.ts';
import { bitwiseMismatch } from '../support/runtime-cases.ts';
import { buildRuntime } from './build-runtime.ts';

const model = resolveRandomConfig('tiny', {
  name: 'emu-engine-2l2x1x16v96',
  hiddenSize: 32,
  intermediateSize: 40,
  numLayers: 2,
  numHeads: 2,
  numKvHeads: 1,
  headDim: 16,
  vocabSize: 96,
});
// A draft that keeps 2 sink + 6 recent positions of prompts up to 21 long: it disagrees with the target
// often enough that rounds reject and roll back.
const DEPLOYMENT: DeploymentIR = {
  ...makeDeployment({
    model,
    target: { attention: attentions.causal(), kv: policies.full() },
    draft: { attention: attentions.causal(), kv: policies.streaming(2, 6) },
    gamma: 3,
    batch: [1, 3],
    maxSeq: 64,
    pageSize: 8,
    dtype: 'bf16',
  }),
  arch: 'sm_90',
};

const PROMPTS = [1, 9, 21].map((n, k) => Array.from({ length: n }, (_, i) => (i * 29 + k * 17 + 5) % model.vocabSize));
const MAX_TOKENS = 10;

const root = mkdtempSync(join(tmpdir(), 'md-cuda-emu-'));
const modelDir = join(root, 'model');
let Engine: typeof EngineT;
let library: string;
/** Each prompt decoded alone, autoregressively (bucket 1): the reference of every case. */
let reference: Generation[];

async function decode(opts: EngineOptions, prompts: number[][]): Promise<{ got: Generation[]; info: Record<string, unknown> }> {
  const e = await Engine.create(modelDir, library, { keepLogits: true, ...opts });
  try {
    const got = await Promise.all(prompts.map((p) => e.generate(p, { maxTokens: MAX_TOKENS, ignoreEos: true })));
    return { got, info: e.info() };
  } finally {
    e.close();
  }
}

beforeAll(async () => {
  buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
  writeRandomModel({ seed: 5, dtype: 'bf16', out: modelDir, config: model });
  const plan = planModule(DEPLOYMENT);
  ({ library } = await buildModule({ name: plan.name, files: emitCuda(plan), target: 'sm_90', emulate: true }));
  reference = [];
  for (const p of PROMPTS) reference.push(...(await decode({ mode: 'ar', maxBatch: 1 }, [p])).got);
}, 600_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('the engine on an emulated CUDA sm_90 bf16 module', () => {
  it('runs on the emulated device and computes the model (logits near the float64 reference)', async () => {
    const { info } = await decode({ mode: 'ar', maxBatch: 1 }, []);
    expect(info.device).toBe('sm_90 under the SIMT emulator (host memory)');
    expect((info.module as { arch: string }).arch).toBe('sm_90');
    const ref = loadReferenceModel(modelDir);
    for (const [k, g] of reference.entries()) {
      expect(g.tokens).toHaveLength(MAX_TOKENS);
      const want = ref.forward([...PROMPTS[k], ...g.tokens.slice(0, -1)]);
      let maxDiff = 0;
      g.tokens.forEach((_, i) => {
        const row = want[PROMPTS[k].length - 1 + i];
        for (let v = 0; v < row.length; v++) maxDiff = Math.max(maxDiff, Math.abs(row[v] - g.logits![i][v]));
      });
      expect(maxDiff).toBeLessThan(0.05); // bf16 weights and KV cache
    }
  });

  const CASES: { label: string; opts: EngineOptions }[] = [
    { label: 'gamma 3, the three prompts batched (bucket 3)', opts: { mode: 'spec', gamma: 3, maxBatch: 3 } },
    { label: 'gamma 1, one sequence at a time (bucket 1)', opts: { mode: 'spec', gamma: 1, maxBatch: 1 } },
    { label: "gamma 'auto', batch 2, prefill chunks of 4 rows", opts: { mode: 'spec', gamma: 'auto', maxBatch: 2, prefillChunk: 4 } },
    { label: 'autoregressive, batched (bucket 3)', opts: { mode: 'ar', maxBatch: 3 } },
  ];
  it.each(CASES)('$label: the reference tokens, logits bitwise', async ({ opts }) => {
    const { got } = await decode(opts, PROMPTS);
    got.forEach((g, k) => expect(bitwiseMismatch(g, reference[k]), `prompt ${k}`).toBeUndefined());
    if (opts.mode === 'spec') {
      const drafted = got.reduce((n, g) => n + g.stats.drafted, 0);
      const accepted = got.reduce((n, g) => n + g.stats.accepted, 0);
      expect(drafted).toBeGreaterThan(0);
      expect(accepted, 'some drafts are rejected, so rollback is exercised').toBeLessThan(drafted);
    }
  });
});
