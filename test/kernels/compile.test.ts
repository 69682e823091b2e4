// The generated C++ of every test module (all dtypes, masks, scores and policies) compiles with
// -Wall -Wextra -Werror at -O2 (where the optimiser-based warnings live), portable and with the build's
// -march=native; the sources themselves name no target (-march=native stays a build flag only).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../codegen/backends/cpu.ts';
import { planModule } from '../../codegen/plan.ts';
import { KERNEL_DEPLOYMENTS } from '../harness/kernels/deployments.ts';

const run = promisify(execFile);

describe.each(Object.entries(KERNEL_DEPLOYMENTS))('generated C++ of %s', (_name, dep) => {
  const files = cpuBackend.emit(planModule(dep));

  // Portable, and with -march=native (the build's flag): the vector paths the host's ISA macros select.
  // GCC 12 flags its own AVX-512 intrinsics' undefined pass-through operands as uninitialized (GCC PR
  // 105593, fixed in 13), so the native build leaves those two warnings out.
  it.each([[[]], [['-march=native', '-Wno-uninitialized', '-Wno-maybe-uninitialized']]])('compiles warning-free with -Wall -Wextra %j', async (isa: string[]) => {
    const dir = mkdtempSync(join(tmpdir(), 'md-cpu-'));
    try {
      for (const f of files) writeFileSync(join(dir, f.path), f.contents);
      for (const unit of files.filter((f) => f.path.endsWith('.cpp'))) {
        const { stderr } = await run('g++', ['-std=c++17', '-fopenmp', '-Wall', '-Wextra', '-Werror', '-O2', '-ffp-contract=off', ...isa, '-c', '-o', '/dev/null', unit.path], { cwd: dir });
        expect(stderr, unit.path).toBe('');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);

  it('names no target-specific flag, no fast-math and no compiler extension in the sources', () => {
    const text = files.map((f) => f.contents).join('\n');
    expect(text).not.toMatch(/march|ffast-math|__attribute__|__fp16|__bf16|_Float16|#pragma GCC/);
    expect(files.map((f) => f.path).sort()).toEqual([
      'attn_draft.cpp',
      'attn_target.cpp',
      'dense.cpp',
      'gemm.cpp',
      'md_abi.h',
      'md_argmax.h',
      'md_cpu.h',
      'md_expr.h',
      'md_module.h',
      'md_philox.h',
      'md_sampling.h',
      'module.cpp',
      'sample.cpp',
    ]);
  });

  it('emits identical sources for an identical plan', () => {
    expect(cpuBackend.emit(planModule(dep))).toEqual(files);
  });
});
