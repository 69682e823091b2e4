// Every generated .cu compiles with nvcc for sm_80 and sm_90a: no warnings, no register spills in any
// kernel, and the objects together define every entry point of the module. Runs without a GPU; fails
// (never skips) without nvcc.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EXTRA_SPECS } from '../../codegen/abi.ts';
import { emitCuda } from '../../codegen/backends/cuda.ts';
import { planModule } from '../../codegen/plan.ts';
import type { DeploymentIR } from '../../codegen/spec.ts';
import { cudaDeploymentArb, defaultCudaDeployment } from './deployments.ts';
import { makeDeployment, modelConfig, verifiers } from '../support/deployments.ts';
import { buildModule, pool } from '../../codegen/build.ts';
import { compileUnit, type CompiledUnit, type CudaArch } from './nvcc.ts';

const ARCHS: readonly CudaArch[] = ['sm_80', 'sm_90a'];

/** Problems with a module's compiled units, as readable lines; empty when all is well. */
async function compileProblems(dep: DeploymentIR): Promise<string[]> {
  const plan = planModule(dep);
  const files = emitCuda(plan);
  const units = files.filter((f) => f.path.endsWith('.cu')).map((f) => f.path);
  const results: CompiledUnit[] = await pool(units, Math.max(1, Math.min(2, cpus().length)), (unit) => compileUnit(files, unit, ARCHS));
  const problems: string[] = [];
  for (const r of results) {
    for (const d of r.diagnostics) problems.push(`${plan.name} ${r.unit}: ${d}`);
    for (const arch of ARCHS)
      if (r.unit !== 'md_module.cu' && !r.kernels.some((k) => k.arch === arch)) problems.push(`${plan.name} ${r.unit}: ptxas reported no kernels for ${arch}`);
    for (const k of r.kernels)
      if (k.spillStores || k.spillLoads)
        problems.push(`${plan.name} ${r.unit} ${k.arch}: ${k.name} spills (${k.spillStores} B stored, ${k.spillLoads} B loaded, ${k.registers} registers)`);
  }
  const defined = new Set(results.flatMap((r) => r.symbols));
  const wanted = [...plan.kernels.map((k) => k.symbol), ...EXTRA_SPECS.map((e) => `md_${e.name}`)];
  for (const s of wanted) if (!defined.has(s)) problems.push(`${plan.name}: entry point ${s} is not defined`);
  return problems;
}

describe('CUDA backend: nvcc', () => {
  it('compiles the default deployment (Llama-3.1-8B, bf16, buckets 1-256) cleanly for sm_80 and sm_90a', async () => {
    expect(await compileProblems(defaultCudaDeployment())).toEqual([]);
  }, 600_000);

  it("compiles md_sample.cu with the typical verifier's rule and entropy reduction cleanly (vocab 97)", async () => {
    const dep = { ...makeDeployment({ model: modelConfig({ numHeads: 2, numKvHeads: 1, headDim: 32, vocabSize: 97, name: 'typical-cuda' }), dtype: 'bf16', arch: 'sm_90' }), verify: verifiers.typical() };
    const files = emitCuda(planModule(dep));
    expect(files.find((f) => f.path === 'md_sample.cu')!.contents).toContain('constexpr bool MD_VERIFY_ENTROPY = true;');
    const r = await compileUnit(files, 'md_sample.cu', ARCHS);
    expect(r.diagnostics).toEqual([]);
    expect(r.kernels.filter((k) => k.spillStores || k.spillLoads)).toEqual([]);
    for (const arch of ARCHS) expect(r.kernels.some((k) => k.arch === arch && /verify_sample/.test(k.name)), arch).toBe(true);
  }, 600_000);

  it('compiles sampled deployments (presets, params, dtypes, small models) cleanly', async () => {
    await fc.assert(
      fc.asyncProperty(cudaDeploymentArb, async (dep) => {
        expect(await compileProblems(dep)).toEqual([]);
      }),
      // Each sample is ~20 nvcc runs: a handful bounds CI time; no shrinking (it would recompile for minutes).
      { numRuns: 3, endOnFailure: true },
    );
  }, 900_000);

  it('links a module against the shared CUDA runtime, the one the runtime links: one cudart per process', async () => {
    const plan = planModule(makeDeployment({ arch: 'sm_80' }));
    const cacheDir = mkdtempSync(join(tmpdir(), 'md-cudart-'));
    try {
      const { library } = await buildModule({ name: plan.name, files: emitCuda(plan), target: 'sm_80', cacheDir });
      const needed = [...execFileSync('readelf', ['-d', library], { encoding: 'utf8' }).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
      expect(needed.filter((n) => /^libcudart\.so/.test(n))).toHaveLength(1);
      // A static cudart would define the runtime API in the module itself.
      expect(execFileSync('nm', ['-D', '--defined-only', library], { encoding: 'utf8' })).not.toMatch(/\bcudaLaunchKernel\b/);
    } finally {
      rmSync(cacheDir, { recursive: true, force: true });
    }
  }, 600_000);
});
