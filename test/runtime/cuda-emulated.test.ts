// The engine's CUDA path, end to end through the Node API, without a GPU: a CUDA sm_90 bf16 module built
// for the SIMT emulator (codegen/build.ts `emulate`) is loaded by the runtime like any module, runs on the
// host-memory device (runtime/src/device.h) with the same uploads, device-side drafting and verification
// and read-backs as on a GPU, and speculative decoding emits the autoregressive tokens with bitwise-equal
// logits over prompts crossing pages, batches in two buckets, gammas 1..3 and 'auto', and short prefill
// chunks; sampled requests too, on modules whose verifiers sample (md_sample and md_verify_sample on the
// device). The emulator is slow (every CTA's threads are fibers): a two-layer model, short prompts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emitCuda } from '../../codegen/backends/cuda.ts';
import { buildModule } from '../../codegen/build.ts';
import { planModule } from '../../codegen/plan.ts';
import type { DeploymentIR, VerifierIR } from '../../codegen/spec.ts';
import { resolveRandomConfig, writeRandomModel } from '../../model/random.ts';
import type { Engine as EngineT, EngineOptions, EngineStats, Generation, RequestOptions } from '../../runtime/node/index.ts';
import { onGpu } from '../harness/emu/module.ts';
import { loadReferenceModel } from '../reference/llama.ts';
import { attentions, makeDeployment, policies, verifiers } from '../support/deployments.ts';
import { bitwiseMismatch } from '../support/runtime-cases.ts';
import { buildRuntime, runProgram, type RuntimeBuild } from './build-runtime.ts';

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
const deployment = (verify: VerifierIR): DeploymentIR =>
  onGpu({
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
    verify,
  });

const PROMPTS = [1, 9, 21].map((n, k) => Array.from({ length: n }, (_, i) => (i * 29 + k * 17 + 5) % model.vocabSize));
const MAX_TOKENS = 10;

const root = mkdtempSync(join(tmpdir(), 'md-cuda-emu-'));
const modelDir = join(root, 'model');
let Engine: typeof EngineT;
let rt: RuntimeBuild;
let library: string;
/** The same deployment with a 'match' (sampleAndMatch) and a 'sample' (rejection) verifier. */
let matchLibrary: string;
let rejectionLibrary: string;
/** Each prompt decoded alone, autoregressively (bucket 1): the reference of every case. */
let reference: Generation[];

async function decode(
  opts: EngineOptions,
  prompts: number[][],
  lib = library,
  request: (k: number) => RequestOptions = () => ({}),
): Promise<{ got: Generation[]; info: Record<string, unknown>; stats: EngineStats }> {
  const e = await Engine.create(modelDir, lib, { keepLogits: true, ...opts });
  try {
    const got = await Promise.all(prompts.map((p, k) => e.generate(p, { maxTokens: MAX_TOKENS, ignoreEos: true, ...request(k) })));
    return { got, info: e.info(), stats: e.stats() };
  } finally {
    e.close();
  }
}

beforeAll(async () => {
  // The host-memory device makes no CUDA call, so any host wait is a module entry point's: an error, as it
  // would be in a CUDA graph capture (md_simt_emu.h; inherited by the C API program of runProgram).
  process.env.MD_SIMT_EMU_HOST_WAITS = 'fail';
  rt = buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
  writeRandomModel({ seed: 5, dtype: 'bf16', out: modelDir, config: model });
  const build = async (verify: VerifierIR) => {
    const plan = planModule(deployment(verify));
    return (await buildModule({ name: plan.name, files: emitCuda(plan), target: 'sm_90', emulate: true })).library;
  };
  library = await build(verifiers.greedy());
  matchLibrary = await build(verifiers.sampleAndMatch());
  rejectionLibrary = await build(verifiers.rejection());
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
      // bf16 weights and KV cache, and the tensor cores' bf16 operands (every GEMM's activations, attention's
      // q and softmax weights): within two bf16 units of the largest logit (measured 1.4).
      const top = Math.max(...want.map((r) => Math.max(...Array.from(r, Math.abs))));
      expect(maxDiff).toBeLessThan(2 * 2 ** -8 * top);
    }
  });

  it('through the C API: speculative (gamma 2 and auto) and autoregressive emit the reference tokens', () => {
    for (const [mode, gamma] of [['spec', '2'], ['spec', 'auto'], ['ar', '1']]) {
      const r = runProgram(rt.capi, ['generate', modelDir, library, mode, gamma, String(MAX_TOKENS), ...PROMPTS[2].map(String)]);
      expect(r.status, `${mode} ${gamma}`).toBe(0);
      expect(r.stdout.split('\n')[0], `${mode} ${gamma}`).toBe(reference[2].tokens.join(' '));
    }
  });

  const CASES: { label: string; opts: EngineOptions }[] = [
    { label: 'gamma 3, the three prompts batched (bucket 3)', opts: { mode: 'spec', gamma: 3, maxBatch: 3 } },
    { label: 'gamma 1, one sequence at a time (bucket 1)', opts: { mode: 'spec', gamma: 1, maxBatch: 1 } },
    { label: "gamma 'auto', batch 2, prefill chunks of 4 rows", opts: { mode: 'spec', gamma: 'auto', maxBatch: 2, prefillChunk: 4 } },
    { label: 'autoregressive, batched (bucket 3)', opts: { mode: 'ar', maxBatch: 3 } },
  ];
  it.each(CASES)('$label: the reference tokens, logits bitwise', async ({ opts }) => {
    const { got, info, stats } = await decode(opts, PROMPTS);
    got.forEach((g, k) => expect(bitwiseMismatch(g, reference[k]), `prompt ${k}`).toBeUndefined());
    if (opts.mode === 'spec') {
      const drafted = got.reduce((n, g) => n + g.stats.drafted, 0);
      const accepted = got.reduce((n, g) => n + g.stats.accepted, 0);
      expect(drafted).toBeGreaterThan(0);
      expect(accepted, 'some drafts are rejected, so rollback is exercised').toBeLessThan(drafted);
      // The greedy rounds' draft steps were captured (the emulated device's twin of a CUDA graph) and
      // replayed: the tokens above are the replays'.
      expect(info.draftGraphs).toBe('captured');
      expect(stats.graphCaptures).toBeGreaterThan(0);
      expect(stats.graphReplays).toBeGreaterThan(stats.graphCaptures);
    }
  });

  it('the draft steps replayed as graphs draft what eager steps draft: per request, the same accepted counts, over gammas 3, 1, 3', async () => {
    // Verification makes a wrong draft cost acceptance, not tokens: only the accepted counts show a replay
    // that drafts from stale positions, lengths or another gamma's steps.
    const run = async (eager: boolean) => {
      const e = await Engine.create(modelDir, library, { keepLogits: true, mode: 'spec', gamma: 3, maxBatch: 3, eager });
      try {
        const out: Generation[] = [];
        for (const g of [3, 1, 3] as const) {
          e.setGamma(g);
          out.push(...(await Promise.all(PROMPTS.map((p) => e.generate(p, { maxTokens: MAX_TOKENS, ignoreEos: true })))));
        }
        return { out, info: e.info(), stats: e.stats() };
      } finally {
        e.close();
      }
    };
    const graphs = await run(false);
    const eager = await run(true);
    expect(graphs.info.draftGraphs).toBe('captured');
    expect(eager.info.draftGraphs).toBe('uncaptured');
    expect(eager.stats.graphCaptures + eager.stats.graphReplays).toBe(0);
    expect(graphs.stats.graphReplays).toBeGreaterThan(0);
    graphs.out.forEach((g, k) => {
      expect(bitwiseMismatch(g, reference[k % PROMPTS.length]), `request ${k}`).toBeUndefined();
      expect(g.stats.accepted, `request ${k}: accepted`).toBe(eager.out[k].stats.accepted);
      expect(g.stats.drafted, `request ${k}: drafted`).toBe(eager.out[k].stats.drafted);
    });
  });
});

// Prompt 0 greedy, prompts 1 and 2 sampled under their own seeds.
const sampled = (k: number): RequestOptions => (k === 0 ? {} : { temperature: 0.9, topK: 24, topP: 0.95, seed: 1000 + k });

describe('sampled requests on emulated CUDA sm_90 modules', () => {
  it("a 'match' verifier: speculative emits the autoregressive samples, logits bitwise", async () => {
    const want: Generation[] = [];
    for (const [k, p] of PROMPTS.entries()) want.push(...(await decode({ mode: 'ar', maxBatch: 1 }, [p], matchLibrary, () => sampled(k))).got);
    expect(want[0].tokens).toEqual(reference[0].tokens);
    expect(want[1].tokens).not.toEqual(reference[1].tokens);
    const { got } = await decode({ mode: 'spec', gamma: 3, maxBatch: 3 }, PROMPTS, matchLibrary, sampled);
    got.forEach((g, k) => expect(bitwiseMismatch(g, want[k]), `prompt ${k}`).toBeUndefined());
    expect(got.reduce((n, g) => n + g.stats.accepted, 0)).toBeGreaterThan(0);
  });

  it("a 'sample' verifier: md_verify_sample on the device; a request decodes the same alone and batched", async () => {
    const alone: Generation[] = [];
    for (const [k, p] of PROMPTS.entries()) alone.push(...(await decode({ mode: 'spec', gamma: 2, maxBatch: 1 }, [p], rejectionLibrary, () => sampled(k))).got);
    const { got } = await decode({ mode: 'spec', gamma: 2, maxBatch: 3 }, PROMPTS, rejectionLibrary, sampled);
    got.forEach((g, k) => expect(bitwiseMismatch(g, alone[k]), `prompt ${k}`).toBeUndefined());
    // The greedy request is verified by argmax: the autoregressive tokens.
    expect(bitwiseMismatch(got[0], reference[0])).toBeUndefined();
    for (const g of got) expect(g.tokens.every((t) => t >= 0 && t < model.vocabSize)).toBe(true);
    expect(got[1].stats.drafted).toBeGreaterThan(0);
  });
});
