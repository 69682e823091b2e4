// A verifier written in a spec file (examples/custom-verifier.ts: speculative sampling spelled out with
// its own accept and residual) works like the built-ins: the front end lowers its functions, the CPU module
// renders them into md_verify_sample, and end to end on a random tiny model greedy requests give the
// autoregressive tokens and logits bit for bit, sampled requests are distributed as the target's own
// samples (lib/stats.ts: PIT chi-square and drawn-probability z, false alarm < 1.5e-6, fixed seeds) in
// both modes, and a seeded request gives the same tokens alone and batched.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendFor } from '../../codegen/backends/index.ts';
import { renderModule } from '../../codegen/module.ts';
import { loadDeployment } from '../../lib/deployment.ts';
import { decodeBatch } from '../../lib/decode.ts';
import { memoryIo } from '../../lib/io.ts';
import { buildCpuModule, cpuDeploymentFor, type CpuModule } from '../../lib/module.ts';
import { fitProblem, fitTarget } from '../../lib/stats.ts';
import { writeRandomModel } from '../../model/random.ts';
import type { SamplingParams } from '../../model/sampling.ts';
import type { Engine } from '../../runtime/node/index.ts';
import { mulberry32 } from '../harness/kernels/attention-case.ts';
import { bitwiseMismatch } from '../support/runtime-cases.ts';
import { buildRuntime, REPO } from './build-runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'md-custom-verifier-'));
const modelDir = join(root, 'tiny');
let built: CpuModule;

beforeAll(async () => {
  buildRuntime();
  const info = writeRandomModel({ preset: 'tiny', seed: 3, dtype: 'bf16', out: modelDir });
  const dep = await loadDeployment(join(REPO, 'examples/custom-verifier.ts'));
  built = await buildCpuModule(cpuDeploymentFor(dep, info.config, { maxSeq: 256 }), memoryIo());
}, 600_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A draft that reads 2 positions: acceptance far from 1, so rejections and residual draws are common. */
const narrowDraft = (e: Engine) => {
  e.setParam('draft', 'kv_sink', 0);
  e.setParam('draft', 'kv_window', 2);
};

function prompts(n: number, seed: number): number[][] {
  const rnd = mulberry32(seed);
  return Array.from({ length: n }, () => Array.from({ length: 1 + Math.floor(rnd() * 12) }, () => Math.floor(rnd() * 512)));
}

const MAX_TOKENS = 20;

function decode(mode: 'ar' | 'spec', sampling: SamplingParams, ps: number[][], seed0: number, maxBatch = 4) {
  return decodeBatch(
    modelDir,
    built.library,
    { mode, gamma: 3, maxBatch, keepLogits: true },
    ps,
    { maxTokens: MAX_TOKENS, ignoreEos: true, sampling, seeds: ps.map((_, i) => seed0 + i) },
    narrowDraft,
  );
}

describe('a user-written verifier (examples/custom-verifier.ts)', () => {
  it("is the spec's own rule in the module's verification kernel", () => {
    const v = built.plan.deployment.verify;
    expect(v.name).toBe('surplus_sampling');
    expect(v.mode).toBe('sample');
    expect(built.plan.verifierRule.from).toBe("verifier 'surplus_sampling'");
    const sample = renderModule(built.plan, backendFor('cpu')).find((f) => f.path === 'sample.cpp')!.contents;
    expect(sample).toContain("// md_verify_sample's rule: verifier 'surplus_sampling'.");
    expect(sample).not.toContain('the standard rule');
  });

  it('greedy requests: speculative tokens and logits == autoregressive, bit for bit', async () => {
    const greedy = { temperature: 0, topK: 0, topP: 1, minP: 0 };
    const ps = prompts(6, 11);
    const spec = await decode('spec', greedy, ps, 0);
    const ar = await decode('ar', greedy, ps, 0);
    spec.generations.forEach((g, i) => expect(bitwiseMismatch(g, ar.generations[i]), `request ${i}`).toBeUndefined());
    expect(spec.summary.acceptance).toBeLessThan(1);
  });

  it.each([
    { temperature: 1, topK: 0, topP: 1, minP: 0 },
    { temperature: 0.7, topK: 50, topP: 0.9, minP: 0.02 },
  ])('sampled requests are distributed as the target samples, speculative and autoregressive: %o', async (sampling) => {
    const ps = prompts(160, 12);
    const spec = await decode('spec', sampling, ps, 700);
    expect(spec.summary.acceptance).toBeGreaterThan(0.05);
    expect(spec.summary.acceptance).toBeLessThan(0.9);
    const fs = fitTarget(spec.generations.map((g) => ({ tokens: g.tokens, logits: g.logits! })), sampling, 1);
    expect(fs.n).toBe(160 * MAX_TOKENS);
    expect(fitProblem(fs), JSON.stringify(fs)).toBeUndefined();
    const ar = await decode('ar', sampling, ps, 700);
    expect(fitProblem(fitTarget(ar.generations.map((g) => ({ tokens: g.tokens, logits: g.logits! })), sampling, 2))).toBeUndefined();
  }, 300_000);

  it('a seeded request gives the same tokens alone and batched', async () => {
    const sampling = { temperature: 1, topK: 0, topP: 1, minP: 0 };
    const ps = prompts(4, 13);
    const batched = await decode('spec', sampling, ps, 40);
    for (const [i, pr] of ps.entries()) {
      const alone = await decode('spec', sampling, [pr], 40 + i, 1);
      expect(alone.generations[0].tokens, `request ${i}`).toEqual(batched.generations[i].tokens);
    }
  });
});
