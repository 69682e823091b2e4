// The deployments whose CUDA modules the emulated kernel tests run: the CPU kernel tests' modules
// (test/harness/kernels/deployments.ts: MHA and GQA, head_dim 16..64 with a lane tail at 40, fp32 / bf16 /
// fp16, every mask, score and policy preset) retargeted to sm_90, plus an odd vocabulary with a K that
// is no multiple of the vector width (tails on both GEMM axes).
import { KERNEL_DEPLOYMENTS } from '../harness/kernels/deployments.ts';
import { onGpu } from '../harness/emu/module.ts';
import { makeDeployment, modelConfig } from '../support/deployments.ts';

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
};
export type EmuDeploymentName = keyof typeof EMU_DEPLOYMENTS;
