// gen's core: plan a deployment, render it, optionally compile it, and only then replace the output
// directory, so that neither a render nor a build failure touches what was there.
import { relative } from 'node:path';
import type { EmittedFile } from '../codegen/backend.ts';
import { backendFor } from '../codegen/backends/index.ts';
import { buildModule, type BuiltModule } from '../codegen/build.ts';
import { checkReplaceable, isModuleDir, renderModule, writeTree } from '../codegen/module.ts';
import { planModule, type ModulePlan } from '../codegen/plan.ts';
import type { DeploymentIR } from '../codegen/spec.ts';
import type { Io } from '../lib/io.ts';
import { progress } from '../lib/progress.ts';

export interface GenerateOptions {
  readonly deployment: DeploymentIR;
  readonly out: string;
  readonly build?: boolean;
  /** Build cache directory; codegen/build.ts's default when absent. */
  readonly cacheDir?: string;
}

export interface GenerateResult {
  readonly plan: ModulePlan;
  readonly out: string;
  readonly files: readonly EmittedFile[];
  readonly built?: BuiltModule;
}

export async function generate(opts: GenerateOptions, io: Io): Promise<GenerateResult> {
  const plan = planModule(opts.deployment);
  checkReplaceable(opts.out, isModuleDir);
  const files = renderModule(plan, backendFor(plan.deployment.arch));
  let built: BuiltModule | undefined;
  if (opts.build) {
    const bar = progress(io, `compiling ${plan.name}`);
    try {
      built = await buildModule({ name: plan.name, files, target: plan.deployment.arch, cacheDir: opts.cacheDir, onProgress: bar.update });
    } finally {
      bar.stop();
    }
  }
  writeTree(opts.out, files, isModuleDir);
  return { plan, out: opts.out, files, built };
}

/** The lines gen prints: what was written, and where the library is. */
export function summary(r: GenerateResult): string {
  const lines = [`${r.plan.name}: ${r.plan.kernels.length} kernels, ${r.files.length} files written to ${displayDir(r.out)}`];
  if (r.built) lines.push(`library: ${displayDir(r.built.library)} (${r.built.cached ? 'cached, not recompiled' : 'compiled'})`);
  return `${lines.join('\n')}\n`;
}

function displayDir(p: string): string {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith('..') ? rel : p;
}
