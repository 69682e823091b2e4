// The SIMT emulator's check kernels (test/harness/emu/simt-check.cu, run under emulation by
// test/emu/simt.test.ts) are real CUDA: nvcc compiles them for sm_80 and sm_90a without warnings or
// spills, md_cuda.cuh's device helpers with an emulated twin (md_cp_async16 / commit / wait,
// md_dynamic_smem, md_mma_16816_bf16 / _f16, MD_LAUNCH's kernels) included.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { emitCuda } from '../../codegen/backends/cuda.ts';
import { planModule } from '../../codegen/plan.ts';
import { onGpu } from '../harness/emu/module.ts';
import { makeDeployment } from '../support/deployments.ts';
import { compileUnit } from './nvcc.ts';

describe('SIMT emulator check kernels under nvcc', () => {
  it('compile for sm_80 and sm_90a without warnings or spills', async () => {
    const headers = emitCuda(planModule(onGpu(makeDeployment()))).filter((f) => /\.(h|cuh)$/.test(f.path));
    const unit = { path: 'simt-check.cu', contents: readFileSync(resolve(import.meta.dirname, '../harness/emu/simt-check.cu'), 'utf8') };
    const r = await compileUnit([...headers, unit], 'simt-check.cu', ['sm_80', 'sm_90a']);
    expect(r.diagnostics).toEqual([]);
    const names = r.kernels.map((k) => k.name);
    for (const k of ['k_cp_async', 'k_dynamic', 'k_shuffles', 'k_rotate', 'k_mma']) expect(names.some((n) => n.includes(k)), k).toBe(true);
    for (const k of r.kernels) expect([k.spillStores, k.spillLoads], `${k.name} ${k.arch}`).toEqual([0, 0]);
  }, 300_000);
});
