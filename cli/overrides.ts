// `gen`'s shape flags: parsed one by one as commander reads them, then checked against the spec they
// override (page size, model) and applied to its DeploymentIR.
import { InvalidArgumentError } from 'commander';
import type { DType, Target } from '../dsl/deploy.ts';
import { DEFAULT_GAMMA_MAX, isBatchBucket, isGamma, isMaxSeq, MAX_BATCH, MAX_GAMMA, MAX_SEQ } from '../codegen/limits.ts';
import type { DeploymentIR } from '../codegen/spec.ts';
import { UserError } from '../lib/errors.ts';

/** The limits (codegen/limits.ts) are the front end's too: a flag accepts exactly what a spec may say. */
export { MAX_BATCH, MAX_GAMMA, MAX_SEQ };

export const TARGETS: readonly Target[] = ['cpu', 'sm_80', 'sm_90'];
export const DTYPES: readonly DType[] = ['bf16', 'fp16', 'fp32'];

export interface Overrides {
  target?: Target;
  batch?: number[];
  maxSeq?: number;
  gamma?: Gamma;
  dtype?: DType;
}

/** A gamma flag: tokens drafted per round, or 'auto' (chosen per round by the runtime). */
export type Gamma = number | 'auto';

function integer(text: string, what: string): number {
  if (!/^\s*\d+\s*$/.test(text)) throw new InvalidArgumentError(`${what} must be a whole number, got '${text}'.`);
  return Number(text);
}

/** `--batch 1,8,32`: distinct bucket sizes in ascending order, each in 1..MAX_BATCH. */
export function parseBatch(text: string): number[] {
  const parts = text.split(',');
  const sizes = parts.map((p) => integer(p, 'each batch bucket'));
  for (const b of sizes) {
    if (!isBatchBucket(b)) throw new InvalidArgumentError(`batch bucket ${b} is out of range 1..${MAX_BATCH}.`);
  }
  for (let i = 1; i < sizes.length; i++) {
    if (sizes[i] <= sizes[i - 1]) throw new InvalidArgumentError(`batch buckets must be strictly ascending, got ${sizes.join(',')}.`);
  }
  return sizes;
}

/** `--gamma N` (1..MAX_GAMMA) or `--gamma auto`. */
export function parseGamma(text: string): Gamma {
  if (text.trim() === 'auto') return 'auto';
  if (!/^\s*\d+\s*$/.test(text)) throw new InvalidArgumentError(`gamma must be a whole number or 'auto', got '${text}'.`);
  const g = Number(text);
  if (!isGamma(g)) throw new InvalidArgumentError(`gamma must be in 1..${MAX_GAMMA} or 'auto', got ${g}.`);
  return g;
}

export function parseMaxSeq(text: string): number {
  const n = integer(text, 'max-seq');
  if (!isMaxSeq(n)) throw new InvalidArgumentError(`max-seq must be in 1..${MAX_SEQ}, got ${n}.`);
  return n;
}

/** `--gamma N`: that fixed gamma; `--gamma auto`: adaptive, compiled for an adaptive spec's gammaMax or DEFAULT_GAMMA_MAX. */
function withGamma(dep: DeploymentIR, g: Gamma): DeploymentIR {
  const { adaptiveGamma: _adaptive, ...fixed } = dep;
  return g === 'auto' ? { ...fixed, gamma: dep.adaptiveGamma ? dep.gamma : DEFAULT_GAMMA_MAX, adaptiveGamma: true } : { ...fixed, gamma: g };
}

/** The spec's deployment with the flags applied; errors name the flag and the spec value it conflicts with. */
export function applyOverrides(dep: DeploymentIR, o: Overrides): DeploymentIR {
  const maxSeq = o.maxSeq ?? dep.shapes.maxSeq;
  if (o.maxSeq !== undefined) {
    if (maxSeq % dep.shapes.pageSize !== 0) {
      throw new UserError(`--max-seq ${maxSeq} is not a multiple of the spec's page size ${dep.shapes.pageSize}`);
    }
    if (maxSeq > dep.model.maxPositionEmbeddings) {
      throw new UserError(
        `--max-seq ${maxSeq} exceeds max_position_embeddings ${dep.model.maxPositionEmbeddings} of model '${dep.model.name}'`,
      );
    }
  }
  return {
    ...(o.gamma === undefined ? dep : withGamma(dep, o.gamma)),
    arch: o.target ?? dep.arch,
    dtype: o.dtype ?? dep.dtype,
    shapes: { ...dep.shapes, batch: o.batch ?? dep.shapes.batch, maxSeq },
  };
}
