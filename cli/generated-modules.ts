// generated/: the committed output of the compiler, so that every change to generated code shows up in
// review. It holds the kernel contract (contract/md_abi.h, rendered from codegen/abi.ts: what the runtime
// includes), and two modules: (a) the built-in default deployment on sm_90 and (b) the same passes on the
// `tiny` model for the CPU, which the runtime tests and the demo use. The tiny module is fp32 so that the CPU model tests
// compare against a float64 reference without bf16 storage rounding; batch buckets 1 and 8 and maxSeq 4096
// cover the tests' shapes while keeping the module quick to compile.
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EmittedFile } from '../codegen/backend.ts';
import { renderAbiHeader } from '../codegen/backends/header.ts';
import { backendFor } from '../codegen/backends/index.ts';
import { LIMITS_HEADER_PATH, renderLimitsHeader } from '../codegen/limits.ts';
import { renderModule, writeTree } from '../codegen/module.ts';
import { planModule, type ModulePlan } from '../codegen/plan.ts';
import type { DeploymentIR } from '../codegen/spec.ts';
import { models } from '../dsl/models.ts';
import { loadDeployment } from '../lib/deployment.ts';

export const GENERATED_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../generated');
/** The contract's headers, under GENERATED_DIR: the runtime's and the test drivers' include directory. */
export const CONTRACT_DIR = 'contract';

/** The default deployment's passes, verifier and gamma on the tiny model, for the CPU. */
export function tinyCpuDeployment(base: DeploymentIR): DeploymentIR {
  return {
    ...base,
    model: models.tiny,
    arch: 'cpu',
    dtype: 'fp32',
    shapes: { ...base.shapes, batch: [1, 8], maxSeq: 4096 },
  };
}

/** The deployments committed under generated/, default first. */
export async function generatedDeployments(): Promise<DeploymentIR[]> {
  const base = await loadDeployment();
  return [base, tinyCpuDeployment(base)];
}

/** Every file generated/ must hold, paths relative to it: the contract, generated/<plan.name>/..., a README. */
export async function generatedTree(): Promise<EmittedFile[]> {
  const plans = (await generatedDeployments()).map((dep) => planModule(dep));
  const files = plans.flatMap((plan) =>
    renderModule(plan, backendFor(plan.deployment.arch)).map((f) => ({ path: `${plan.name}/${f.path}`, contents: f.contents })),
  );
  return [
    { path: '.gitattributes', contents: '# Written by `npm run regen`: compared byte for byte by test/generated.test.ts.\n* -text linguist-generated=true\n' },
    { path: 'README.md', contents: readme(plans) },
    { path: `${CONTRACT_DIR}/md_abi.h`, contents: renderAbiHeader() },
    ...files,
  ];
}

/** Rewrite generated/ from scratch (stale modules disappear), and the runtime's limits header; returns generated/'s files. */
export async function regenerate(dir: string = GENERATED_DIR): Promise<EmittedFile[]> {
  const tree = await generatedTree();
  writeTree(dir, tree, () => true);
  if (dir === GENERATED_DIR) writeFileSync(join(GENERATED_DIR, '..', LIMITS_HEADER_PATH), renderLimitsHeader());
  return tree;
}

function readme(plans: readonly ModulePlan[]): string {
  const rows = plans.map((p) => {
    const d = p.deployment;
    return `| \`${p.name}/\` | ${d.model.name} | ${d.arch} | ${d.dtype} | ${p.buckets.join(', ')} | ${p.maxSeq} | ${p.gamma} | ${p.kernels.length} |`;
  });
  return [
    '# generated/',
    '',
    'Output of the compiler, committed so that every change to generated code is visible in review.',
    'Do not edit: run `npm run regen` and commit the result; `test/generated.test.ts` fails while this',
    'directory differs from what the compiler produces.',
    '',
    '`contract/md_abi.h` is the kernel contract rendered from `codegen/abi.ts` (docs/ABI.md): status codes,',
    '`md_attn_args`, one function-pointer type per kernel kind, the kernel list as X-macros and the manifest',
    'format. The runtime includes it; every module directory carries its own copy, with every other header',
    'its sources include, so that a module compiles on its own.',
    '',
    'Modules (`magicdec gen` output):',
    '',
    '| module | model | target | dtype | batch buckets | maxSeq | gamma | kernels |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    'Both use the passes of the built-in default deployment (`dsl/default.ts`): causal attention over the',
    'full cache for the target, causal attention through a StreamingLLM sink + window policy for the draft,',
    'greedy verification. The tiny CPU module is fp32 so that CPU model tests compare against a float64',
    'reference without storage rounding.',
    '',
  ].join('\n');
}
