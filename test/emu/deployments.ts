// The deployments whose CUDA modules the emulated kernel tests run: the CPU kernel tests' modules
// (test/harness/kernels/deployments.ts: MHA and GQA, head_dim 16..64 with a lane tail at 40, fp32 / bf16 /
// fp16, every mask, score and policy preset) retargeted to sm_90, an odd vocabulary with a K that is no
// multiple of the vector width (tails on both GEMM axes), and a slice of a Llama-3.1-8B layer.
import { KERNEL_DEPLOYMENTS } from '../harness/kernels/deployments.ts';
import { onGpu } from '../harness/emu/module.ts';
import { models } from '../../dsl/models.ts';
import { attentions, makeDeployment, modelConfig, policies } from '../support/deployments.ts';

export const EMU_DEPLOYMENTS = {
  mhaF32: onGpu(KERNEL_DEPLOYMENTS.mhaF32),
  gqaBf16: onGpu(KERNEL_DEPLOYMENTS.gqaBf16),
  alibiF32: onGpu(KERNEL_DEPLOYMENTS.alibiF32, 'sm_80'),
  tailF16: onGpu(KERNEL_DEPLOYMENTS.tailF16),
  /** vocab 1001 (a partial last column block), hidden 40 (K not a multiple of bf16's 8-wide loads), three buckets. */
  oddVocabBf16: onGpu(
    makeDeployment({
      model: modelConfig({ numHeads: 2, numKvHeads: 1, headDim: 20, vocabSize: 1001, name: 'odd-vocab' }),
      batch: [1, 2, 5],
      gamma: 2,
      maxSeq: 128,
      pageSize: 8,
      dtype: 'bf16',
    }),
  ),
  /**
   * A Llama-3.1-8B layer slice: 2 of its 8 KV heads with their 8 query heads (head_dim 128, GQA 4:1, its
   * rope), hidden 1024, pages of 64 and chunks of 512 positions, bf16, the default deployment's passes
   * (dsl/default.ts: causal target, StreamingLLM 4 + 508 draft, gamma 3). Costly to emulate: the tests
   * draw fewer cases on it (`heavy`).
   */
  llamaSlice: onGpu(
    makeDeployment({
      model: { ...models.llama31_8b, name: 'llama-3.1-8b-slice', numHeads: 8, numKvHeads: 2, hiddenSize: 1024, intermediateSize: 512, vocabSize: 1000 },
      target: { attention: attentions.causal(), kv: policies.full() },
      draft: { attention: attentions.causal(), kv: policies.streaming(4, 508) },
      gamma: 3,
      batch: [1, 8],
      maxSeq: 2048,
      pageSize: 64,
      dtype: 'bf16',
    }),
  ),
};
export type EmuDeploymentName = keyof typeof EMU_DEPLOYMENTS;

/** A module too large to emulate many cases of (the Llama slice). */
export const heavy = (plan: { readonly dims: { readonly hidden: number } }): boolean => plan.dims.hidden >= 1024;
