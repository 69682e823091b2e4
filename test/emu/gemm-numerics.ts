// The activations the CUDA GEMMs multiply (codegen/backends/cuda.ts, usesMma): rounded to the storage type
// on the tensor-core path (bf16 / fp16), fp32 as given on the CUDA-core path (fp32 storage). A float64
// reference on these values leaves only the fp32 accumulation to tolerate; one on the unrounded values
// must also allow gemmActivationRoundoff.
import { gemmActivationRoundoff, usesMma } from '../../codegen/backends/cuda.ts';
import type { ModulePlan } from '../../codegen/plan.ts';
import { store } from '../harness/kernels/storage.ts';

export function gemmInput(plan: ModulePlan, x: Float32Array): ArrayLike<number> {
  return usesMma(plan) ? store(plan.deployment.dtype, x).values : x;
}

export const activationRoundoff = (plan: ModulePlan): number => (usesMma(plan) ? gemmActivationRoundoff(plan.deployment.dtype) : 0);
