import type { Attention, KvPolicy, Verifier } from './core.ts';
import type { ModelConfig } from './models.ts';

export type Target = 'cpu' | 'sm_80' | 'sm_90';
export type DType = 'bf16' | 'fp16' | 'fp32';

/** One pass over the cache: an attention variant read through a KV policy. */
export interface Pass {
  readonly attention: Attention<any>;
  readonly kv: KvPolicy<any>;
}

export interface Shapes {
  /** Batch buckets: the runtime runs a round in the smallest bucket that holds its live sequences. */
  readonly batch: readonly number[];
  /** Longest sequence (prompt + generated) the module is built for. */
  readonly maxSeq: number;
  /** Tokens per KV-cache page; also the attention kernels' KV tile. */
  readonly pageSize: number;
}

export interface DeployDef {
  /** A preset name ('llama-3.1-8b', 'llama-2-7b-32k', 'tiny', 'small'), a preset object, or a path to a Hugging Face config.json. */
  model: ModelConfig | string;
  target: Pass;
  draft: Pass;
  verify: Verifier;
  /**
   * Tokens drafted per round, or 'auto': the runtime picks 1..gammaMax each round from measured draft and
   * verification times and its acceptance estimate (MagicDec: the best gamma grows with batch and context).
   */
  gamma: number | 'auto';
  /** With gamma 'auto': the most tokens a round may draft, which the module is compiled for (default 8). */
  gammaMax?: number;
  shapes: Shapes;
  dtype: DType;
  arch: Target;
}

export interface Deployment extends Readonly<DeployDef> {
  readonly kind: 'deploy';
}

export function deploy(def: DeployDef): Deployment {
  return { kind: 'deploy', ...def };
}
