// Deployments the CUDA tests compile: the default deployment (dsl/default.ts, built in IR so these tests do
// not depend on the front end) and fast-check samples over presets, params, dtypes and small models.
import fc from 'fast-check';
import type { RopeScaling } from '../../dsl/models.ts';
import { models } from '../../dsl/models.ts';
import type { DeploymentIR } from '../../codegen/spec.ts';
import { attentions, makeDeployment, modelConfig, policies } from '../support/deployments.ts';

/** dsl/default.ts: Llama-3.1-8B, causal/full target, causal/streaming(4, 508) draft, bf16, sm_90. */
export function defaultCudaDeployment(): DeploymentIR {
  return makeDeployment({
    model: models.llama31_8b,
    target: { attention: attentions.causal(), kv: policies.full() },
    draft: { attention: attentions.causal(), kv: policies.streaming(4, 508) },
    gamma: 3,
    batch: [1, 8, 32, 64, 128, 256],
    maxSeq: 32768,
    pageSize: 64,
    dtype: 'bf16',
    arch: 'sm_90',
  });
}

/** Causal attentions: what a target may be (planModule refuses a target that sees later positions). */
export const causalAttentionArb = (heads: number) =>
  fc.oneof(
    fc.constant(attentions.causal()),
    fc.integer({ min: 1, max: 4096 }).map(attentions.slidingWindow),
    fc.oneof(fc.integer({ min: 5, max: 50 }), fc.double({ min: 1, max: 60, noNaN: true })).map(attentions.softcap),
    fc.constant(attentions.alibi(heads)),
  );
/** Any attention, prefix-LM included: what a draft may be. */
export const attentionArb = (heads: number) => fc.oneof(causalAttentionArb(heads), fc.integer({ min: 0, max: 256 }).map(attentions.prefixLM));

export const policyArb = fc.oneof(
  fc.constant(policies.full()),
  fc.tuple(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 1, max: 1024 })).map(([s, w]) => policies.streaming(s, w)),
  fc.integer({ min: 1, max: 1024 }).map(policies.window),
);

export const ropeArb: fc.Arbitrary<RopeScaling | undefined> = fc.constantFrom(
  undefined,
  { type: 'linear', factor: 4 } as const,
  { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } as const,
);

/** Small models (head_dim 16-128, MHA or GQA, odd intermediate sizes allowed), random passes and shapes. */
export const cudaDeploymentArb: fc.Arbitrary<DeploymentIR> = fc
  .record({
    headDim: fc.constantFrom(16, 32, 64, 128),
    kvHeads: fc.constantFrom(1, 2, 4),
    group: fc.constantFrom(1, 2, 4),
    intermediate: fc.integer({ min: 16, max: 700 }),
    vocab: fc.integer({ min: 32, max: 5000 }),
    qkvBias: fc.boolean(),
    rope: ropeArb,
    pageSize: fc.constantFrom(8, 16, 32, 64),
    seqPages: fc.integer({ min: 1, max: 128 }),
    gamma: fc.integer({ min: 1, max: 6 }),
    buckets: fc.uniqueArray(fc.constantFrom(1, 2, 4, 8, 16, 32, 64), { minLength: 1, maxLength: 4 }),
    dtype: fc.constantFrom('bf16' as const, 'fp16' as const, 'fp32' as const),
    arch: fc.constantFrom('sm_80' as const, 'sm_90' as const),
  })
  .chain((s) => {
    const heads = s.kvHeads * s.group;
    return fc.record({ s: fc.constant(s), ta: causalAttentionArb(heads), tk: policyArb, da: attentionArb(heads), dk: policyArb });
  })
  .map(({ s, ta, tk, da, dk }) => {
    const heads = s.kvHeads * s.group;
    const model = modelConfig({
      headDim: s.headDim,
      numHeads: heads,
      numKvHeads: s.kvHeads,
      intermediateSize: s.intermediate,
      vocabSize: s.vocab,
      qkvBias: s.qkvBias,
      ropeScaling: s.rope,
    });
    return makeDeployment({
      model: { ...model, name: `${model.name}x${s.intermediate}x${s.vocab}` },
      target: { attention: ta, kv: tk },
      draft: { attention: da, kv: dk },
      gamma: s.gamma,
      batch: [...s.buckets].sort((a, b) => a - b),
      maxSeq: s.pageSize * s.seqPages,
      pageSize: s.pageSize,
      dtype: s.dtype,
      arch: s.arch,
    });
  });
