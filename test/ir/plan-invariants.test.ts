// planModule owns the model and plan invariants (one PlanError naming every problem); the CUDA backend
// adds only its own launch limits. Deployments here are built in IR, as code that skips the front end would.
import { describe, expect, it } from 'vitest';
import { models } from '../../dsl/models.ts';
import { CudaPlanError, cudaBackend } from '../../codegen/backends/cuda.ts';
import { cpuBackend } from '../../codegen/backends/cpu.ts';
import * as ir from '../../codegen/ir.ts';
import { MAX_SEQ } from '../../codegen/limits.ts';
import { buildManifest } from '../../codegen/manifest.ts';
import { PlanError, planModule } from '../../codegen/plan.ts';
import type { DeploymentIR } from '../../codegen/spec.ts';
import { attentions, makeDeployment, modelConfig, policies } from '../support/deployments.ts';

const refusal = (dep: DeploymentIR): PlanError => {
  try {
    planModule(dep);
  } catch (e) {
    expect(e).toBeInstanceOf(PlanError);
    return e as PlanError;
  }
  throw new Error('planModule accepted the deployment');
};

const bidirectional = { name: 'bidirectional', params: [], const: false, mask: ir.constant(true) };

describe('planModule refuses', () => {
  it.each([
    ['a prefix-LM target', { attention: attentions.prefixLM(16), kv: policies.full() }],
    ['a mask-less target', { attention: bidirectional, kv: policies.streaming(4, 60) }],
  ])('%s: the target must be causal', (_name, target) => {
    expect(refusal(makeDeployment({ target })).message).toContain(
      'the target pass must be causal: its mask lets a query see later positions, which verification and chunked prefill would read; use it as the draft, or add kv <= q',
    );
  });

  it('plans pages smaller than a spec may ask for (kernel tests use them), and any mask as the draft', () => {
    expect(planModule(makeDeployment({ pageSize: 4, maxSeq: 256 })).pageSize).toBe(4);
    for (const attention of [attentions.prefixLM(16), bidirectional]) {
      const plan = planModule(makeDeployment({ draft: { attention, kv: policies.window(32) } }));
      expect(plan.passes.draft.ir.attention.name).toBe(attention.name);
    }
  });

  it.each<[string, Parameters<typeof makeDeployment>[0], RegExp]>([
    ['an odd head_dim', { model: modelConfig({ numHeads: 2, numKvHeads: 2, headDim: 15 }) }, /model .*: field 'headDim' must be even for rotary embeddings, got 15/],
    ['heads not a multiple of KV heads', { model: { ...models.tiny, numHeads: 6, numKvHeads: 4 } }, /model .*: field 'numKvHeads' \(4\) must divide numHeads \(6\)/],
    ['a batch bucket of 0', { batch: [0, 8] }, /batch bucket 0 is not an integer from 1 to 4096/],
    ['a batch bucket past 4096', { batch: [8, 8192] }, /batch bucket 8192 is not an integer from 1 to 4096/],
    ['unsorted buckets', { batch: [8, 1] }, /batch buckets must be strictly ascending, got 8,1/],
    ['gamma 17', { gamma: 17 }, /gamma 17 is not an integer from 1 to 16/],
    ['pageSize 48', { pageSize: 48, maxSeq: 480 }, /pageSize 48 is not a power of two up to 256/],
    ['pageSize 512', { pageSize: 512, maxSeq: 4096 }, /pageSize 512 is not a power of two up to 256/],
    ['maxSeq past 2^22', { model: { ...models.tiny, maxPositionEmbeddings: 2 * MAX_SEQ }, maxSeq: 2 * MAX_SEQ }, /maxSeq 8388608 is not an integer from 1 to 4194304/],
    ['maxSeq not whole pages', { maxSeq: 1000 }, /maxSeq \(1000\) must be a multiple of pageSize \(16\)/],
    ['maxSeq past the model', { maxSeq: 32768 }, /maxSeq \(32768\) exceeds the model's maxPositionEmbeddings \(16384\)/],
    ['a runtime i32 param past 2^24', { draft: { attention: attentions.causal(), kv: policies.window(2 ** 24 + 1) } }, /draft window: param 'window' = 16777217 is a runtime i32 beyond ±2\^24/],
  ])('%s', (_name, opts, message) => {
    expect(refusal(makeDeployment(opts)).message).toMatch(message);
  });

  it('names every problem at once, and the module', () => {
    const e = refusal(makeDeployment({ gamma: 0, batch: [], target: { attention: attentions.prefixLM(1), kv: policies.full() } }));
    expect(e.message).toMatch(/^cannot plan tiny\.cpu\.fp32\.t_prefix_lm-full\.d_causal-streaming\.greedy\.g0: /);
    for (const part of ['batch buckets must not be empty', 'gamma 0 is not an integer', 'the target pass must be causal']) expect(e.message).toContain(part);
  });
});

describe('backends', () => {
  it('the CPU backend emits whatever planModule accepts', () => {
    expect(cpuBackend.emit(planModule(makeDeployment())).length).toBeGreaterThan(0);
  });

  it('the CUDA backend keeps only its own limits, as CudaPlanError (a PlanError)', () => {
    const narrow = makeDeployment({ model: modelConfig({ numHeads: 2, numKvHeads: 2, headDim: 16, hiddenSize: 30 }), arch: 'sm_90' });
    const err = (() => {
      try {
        cudaBackend.emit(planModule(narrow));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(CudaPlanError);
    expect(err).toBeInstanceOf(PlanError);
    expect((err as Error).message).toMatch(/hidden_size 30 must be a multiple of 4/);
    // A head_dim past 1024 never reaches the backend: the model limits (codegen/limits.ts) refuse it for every target.
    const wide = makeDeployment({ model: modelConfig({ numHeads: 2, numKvHeads: 2, headDim: 2048 }), arch: 'sm_90' });
    expect(() => planModule(wide)).toThrow(/field 'headDim' must be an integer from 1 to 1024, got 2048/);
  });

  it("refuses attention whose dims outgrow a CTA's threads or its shared memory, and sizes the rest", () => {
    const emit = (o: Parameters<typeof makeDeployment>[0]) => () => cudaBackend.emit(planModule(makeDeployment({ arch: 'sm_90', ...o })));
    // fp32 head_dim 1024: 256 four-wide vectors for 128 threads.
    expect(emit({ model: modelConfig({ numHeads: 2, numKvHeads: 2, headDim: 1024 }), dtype: 'fp32' })).toThrow(/head_dim 1024 must be at most 512 for fp32 attention/);
    // 8 rows x 4 heads of head_dim 512 in fp32 with pages of 64: staged tiles alone take 4 x 64 x 2 KiB.
    const big = { model: modelConfig({ numHeads: 8, numKvHeads: 2, headDim: 512 }), dtype: 'fp32' as const, gamma: 7, pageSize: 64 };
    expect(emit(big)).toThrow(/attention needs \d+ bytes of shared memory \(8 rows x group 4 x head_dim 512, pages of 64\); sm_90 allows 231424/);
    expect(emit({ ...big, arch: 'sm_80' })).toThrow(/sm_80 allows 165888/);
    expect(emit({ ...big, pageSize: 8 })).not.toThrow();
  });
});

describe('adaptive gamma', () => {
  it("a gamma 'auto' module is its own module: named gauto<max>, hashed apart, and says so in the manifest", () => {
    const fixed = planModule(makeDeployment({ gamma: 6 }));
    const auto = planModule({ ...makeDeployment({ gamma: 6 }), adaptiveGamma: true });
    expect([fixed.name.split('.').pop(), auto.name.split('.').pop()]).toEqual(['g6', 'gauto6']);
    expect(auto.hash).not.toBe(fixed.hash);
    // Both verify up to gamma + 1 rows per sequence: the compiled maximum is the same.
    expect(auto.kernels.map((k) => k.maxRows)).toEqual(fixed.kernels.map((k) => k.maxRows));
    expect(buildManifest(auto)).toMatchObject({ gamma: 6, adaptiveGamma: true });
    expect(buildManifest(fixed)).not.toHaveProperty('adaptiveGamma');
  });
});
