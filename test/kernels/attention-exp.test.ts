// The one exp of the CPU attention kernels (scores, rescales, chunk merges): vector lanes and the scalar
// give the same bits, within 2 ulp of e^x (the correctly rounded float of libm's double exp) from -110 to
// 100, subnormal results included, and the MD_PORTABLE and MD_NO_AVX512 (AVX2) builds compute exactly what the
// native one does.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cpuBackend } from '../../codegen/backends/cpu.ts';
import { planModule } from '../../codegen/plan.ts';
import { KERNEL_DEPLOYMENTS } from '../harness/kernels/deployments.ts';

const dir = mkdtempSync(join(tmpdir(), 'md-exp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface ExpCheck {
  inputs: number;
  laneMismatches: number;
  worstUlp: number;
  worstX: number;
  hash: string;
  /** Bits of exp(0), exp(-inf), exp(inf), exp(NaN). */
  specials: number[];
}

function run(defines: readonly string[]): ExpCheck {
  // A module's headers carry everything md_cpu.h includes (md_abi.h, md_expr.h, ...).
  for (const f of cpuBackend.emit(planModule(KERNEL_DEPLOYMENTS.mhaF32))) if (f.path.endsWith('.h')) writeFileSync(join(dir, f.path), f.contents);
  const exe = join(dir, `exp-${defines.join('-') || 'native'}`);
  const source = resolve(import.meta.dirname, '../harness/kernels/exp-check.cpp');
  // The modules' flags (codegen/build.ts): what the kernels compute is what this computes.
  execFileSync('g++', ['-std=c++17', '-O3', '-march=native', '-fopenmp', '-ffp-contract=off', ...defines.map((d) => `-D${d}`), `-I${dir}`, source, '-o', exe]);
  return JSON.parse(execFileSync(exe, { encoding: 'utf8' })) as ExpCheck;
}

describe('attention exp', () => {
  it('vector lanes equal the scalar, within 2 ulp, the special values right, the portable build the same bits', () => {
    const native = run([]);
    expect(native.inputs).toBeGreaterThan(1e7);
    expect(native.laneMismatches).toBe(0);
    expect(native.worstUlp, `worst at x = ${native.worstX}`).toBeLessThanOrEqual(2);
    const [one, zero, inf, nan] = native.specials;
    expect([one, zero, inf]).toEqual([0x3f800000, 0, 0x7f800000]);
    expect((nan & 0x7f800000) === 0x7f800000 && (nan & 0x7fffff) !== 0, 'exp(NaN) is NaN').toBe(true);
    for (const define of ['MD_PORTABLE', 'MD_NO_AVX512']) {
      const other = run([define]);
      expect(other.laneMismatches, define).toBe(0);
      expect(other.hash, define).toBe(native.hash);
    }
  }, 120_000);
});
