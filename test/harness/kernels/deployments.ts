// The few modules the kernel tests compile (each once per run, then cached by content hash): between
// them MHA and GQA, head_dim 16..80 (40 and 80: lane tails), fp32/bf16/fp16 storage, every mask, score and
// policy preset. Runtime params (windows, sinks, caps, prefixes) are drawn per case, not compiled in.
import * as ir from '../../../codegen/ir.ts';
import type { AttentionIR } from '../../../codegen/spec.ts';
import { attentions, makeDeployment, modelConfig, policies } from '../../support/deployments.ts';

/** Bidirectional attention: no mask at all. */
const fullAttention = (): AttentionIR => ({ name: 'full', params: [], const: false, mask: ir.constant(true) });

export const KERNEL_DEPLOYMENTS = {
  /** MHA, fp32: causal target, StreamingLLM draft. */
  mhaF32: makeDeployment({
    model: modelConfig({ numHeads: 4, numKvHeads: 4, headDim: 16 }),
    target: { attention: attentions.causal(), kv: policies.full() },
    draft: { attention: attentions.causal(), kv: policies.streaming(4, 28) },
    batch: [1, 4],
    maxSeq: 256,
    pageSize: 4,
    dtype: 'fp32',
  }),
  /**
   * GQA 4:1, bf16: softcap target, sliding-window mask with a window policy as the draft. head_dim 80 is
   * two whole 32-element bf16 blocks and a half one (the dot and the paired V widening have tails).
   */
  gqaBf16: makeDeployment({
    model: modelConfig({ numHeads: 8, numKvHeads: 2, headDim: 80 }),
    target: { attention: attentions.softcap(20.5), kv: policies.full() },
    draft: { attention: attentions.slidingWindow(48), kv: policies.window(40) },
    batch: [2, 3],
    maxSeq: 512,
    pageSize: 8,
    dtype: 'bf16',
  }),
  /** GQA 3:1, fp32: ALiBi target, prefix-LM with StreamingLLM as the draft. */
  alibiF32: makeDeployment({
    model: modelConfig({ numHeads: 6, numKvHeads: 2, headDim: 32 }),
    target: { attention: attentions.alibi(6), kv: policies.full() },
    draft: { attention: attentions.prefixLM(10), kv: policies.streaming(2, 20) },
    gamma: 2,
    batch: [1, 3],
    maxSeq: 256,
    pageSize: 4,
    dtype: 'fp32',
  }),
  /**
   * GQA 4:1 with head_dim 40 (not a multiple of the lane width), fp16: causal streaming target, bidirectional
   * draft (a target must be causal, codegen/passes/causal.ts; the draft may see any position).
   */
  tailF16: makeDeployment({
    model: modelConfig({ numHeads: 4, numKvHeads: 1, headDim: 40 }),
    target: { attention: attentions.causal(), kv: policies.streaming(0, 24) },
    draft: { attention: fullAttention(), kv: policies.full() },
    gamma: 4,
    batch: [1, 2],
    maxSeq: 192,
    pageSize: 8,
    dtype: 'fp16',
  }),
};

export type KernelDeploymentName = keyof typeof KERNEL_DEPLOYMENTS;

/**
 * bf16 with pages of whole 16-position groups, where attention's full-group paths run: GQA 4:1 with pages
 * of 64, and MHA (one query head per KV head) with a head tail (48 = 32 + 16) and pages of 32.
 */
export const PAGED_BF16_DEPLOYMENTS = {
  pagedBf16: makeDeployment({
    model: modelConfig({ numHeads: 8, numKvHeads: 2, headDim: 64 }),
    target: { attention: attentions.causal(), kv: policies.full() },
    draft: { attention: attentions.causal(), kv: policies.streaming(5, 70) },
    batch: [1, 4],
    maxSeq: 512,
    pageSize: 64,
    dtype: 'bf16',
  }),
  mhaBf16: makeDeployment({
    model: modelConfig({ numHeads: 4, numKvHeads: 4, headDim: 48 }),
    target: { attention: attentions.causal(), kv: policies.full() },
    draft: { attention: attentions.causal(), kv: policies.streaming(3, 40) },
    batch: [1, 8],
    maxSeq: 384,
    pageSize: 32,
    dtype: 'bf16',
  }),
};
