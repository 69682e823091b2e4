// The CPU module a model directory needs, shared by `run`, `demo` and `bench`: a deployment's passes,
// verifier and gamma retargeted to the model's config.json and the CPU, compiled through the build cache
// (an unchanged module is never recompiled).
import { backendFor } from '../codegen/backends/index.ts';
import { buildModule } from '../codegen/build.ts';
import { renderModule } from '../codegen/module.ts';
import { planModule, type ModulePlan } from '../codegen/plan.ts';
import type { DeploymentIR } from '../codegen/spec.ts';
import type { ModelConfig } from '../dsl/models.ts';
import { UserError } from './errors.ts';
import type { Io } from './io.ts';
import { progress } from './progress.ts';

export interface CpuShapes {
  /** Batch buckets; default: the deployment's. */
  readonly batch?: readonly number[];
  /** Longest sequence; default: the deployment's, clamped to what the model's positions allow. */
  readonly maxSeq?: number;
}

/**
 * `base`'s passes, verifier, gamma and dtype on `model` for the CPU. maxSeq defaults to the deployment's,
 * clamped down to the model's max_position_embeddings (rounded to whole pages): the default deployment is
 * shaped for Llama 3.1's 128K positions, and a small model cannot serve past its own.
 */
export function cpuDeploymentFor(base: DeploymentIR, model: ModelConfig, shapes: CpuShapes = {}): DeploymentIR {
  const { pageSize } = base.shapes;
  const fits = Math.floor(model.maxPositionEmbeddings / pageSize) * pageSize;
  const maxSeq = shapes.maxSeq ?? Math.min(base.shapes.maxSeq, fits);
  if (maxSeq < pageSize) {
    throw new UserError(`model '${model.name}' has max_position_embeddings ${model.maxPositionEmbeddings}, less than one KV page (${pageSize} positions)`);
  }
  if (maxSeq % pageSize !== 0 || maxSeq > model.maxPositionEmbeddings) {
    throw new UserError(`maxSeq ${maxSeq} must be a multiple of the page size ${pageSize} and at most max_position_embeddings ${model.maxPositionEmbeddings}`);
  }
  return { ...base, model, arch: 'cpu', shapes: { ...base.shapes, batch: shapes.batch ?? base.shapes.batch, maxSeq } };
}

export interface CpuModule {
  readonly plan: ModulePlan;
  readonly library: string;
  readonly cached: boolean;
}

/** Renders and compiles `dep` (arch cpu) through the build cache; progress lines go to io.stderr. */
export async function buildCpuModule(dep: DeploymentIR, io: Io, cacheDir?: string): Promise<CpuModule> {
  if (dep.arch !== 'cpu') throw new Error(`buildCpuModule: deployment targets ${dep.arch}, not cpu`);
  const plan = planModule(dep);
  const files = renderModule(plan, backendFor('cpu'));
  const bar = progress(io, `compiling ${plan.name}`);
  try {
    const built = await buildModule({ name: plan.name, files, target: 'cpu', cacheDir, onProgress: bar.update });
    return { plan, library: built.library, cached: built.cached };
  } finally {
    bar.stop();
  }
}
