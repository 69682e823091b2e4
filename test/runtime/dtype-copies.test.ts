// Every copy of the bf16/fp16 <-> fp32 conversions agrees with the reference (model/dtypes.ts) bit for bit:
// the runtime's (runtime/src/dtype.*) and the CPU kernels' (md_cpu.h as the CPU backend renders it now),
// both compiled into test/runtime/dtype_copies.cpp. Widening over all 65,536 16-bit patterns; narrowing over
// every fp32 high half with low halves at the rounding boundaries (bf16 and fp16 ties, one above and below,
// fp16-subnormal ties), every fp32 NaN class, and a million seeded random patterns.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generatedDeployments } from '../../cli/generated-modules.ts';
import { backendFor } from '../../codegen/backends/index.ts';
import { renderModule } from '../../codegen/module.ts';
import { planModule } from '../../codegen/plan.ts';
import { bf16BitsToF32Bits, f16BitsToF32Bits, f32ToBf16Bits, f32ToF16Bits } from '../../model/dtypes.ts';
import { REPO } from './build-runtime.ts';

const dir = mkdtempSync(join(tmpdir(), 'md-dtype-copies-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The fp32 patterns to narrow: boundaries of both formats' rounding, NaNs, and random draws. */
function patterns(): Uint32Array {
  const lows = [0, 1, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x2001, 0x3000, 0x3fff, 0x4000, 0x6000, 0x7fff, 0x8000, 0x8001, 0xa000, 0xc000, 0xe000, 0xf000, 0xffff];
  const random = 1 << 20;
  const out = new Uint32Array(0x10000 * lows.length + random);
  let n = 0;
  for (let hi = 0; hi < 0x10000; hi++) for (const lo of lows) out[n++] = ((hi << 16) | lo) >>> 0;
  let s = 0x9e3779b9; // xorshift32, seeded: the same draws every run
  for (let i = 0; i < random; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[n++] = s >>> 0;
  }
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const asF32 = (bits: number) => {
  u32[0] = bits;
  return f32[0];
};
const hex = (x: number, digits: number) => `0x${x.toString(16).padStart(digits, '0')}`;

/** Builds dtype_copies against the CPU backend's md_cpu.h for the committed tiny CPU module. */
async function buildProgram(): Promise<string> {
  const dep = (await generatedDeployments()).find((d) => d.arch === 'cpu')!;
  const moduleDir = join(dir, 'module');
  for (const f of renderModule(planModule(dep), backendFor('cpu'))) {
    execFileSync('mkdir', ['-p', join(moduleDir, f.path, '..')]);
    writeFileSync(join(moduleDir, f.path), f.contents);
  }
  const exe = join(dir, 'dtype_copies');
  const src = (p: string) => join(REPO, p);
  execFileSync('g++', ['-std=c++17', '-O2', '-fopenmp', '-I', src('runtime/src'), '-I', src('templates/common'), '-I', moduleDir,
    src('test/runtime/dtype_copies.cpp'), src('runtime/src/dtype.cpp'), '-o', exe], { stdio: 'pipe' });
  return exe;
}

const COPIES = ['runtime (runtime/src/dtype.cpp)', 'CPU kernels (md_cpu.h)'];

describe('bf16/fp16 conversions: every copy equals the reference (model/dtypes.ts)', () => {
  it('bit for bit, widening all 65,536 patterns and narrowing ~2.4M fp32 patterns', async () => {
    const exe = await buildProgram();
    const input = patterns();
    writeFileSync(join(dir, 'in.u32'), input);
    execFileSync(exe, [join(dir, 'in.u32'), join(dir, 'out')]);
    const out = readFileSync(join(dir, 'out'));
    const widened = new Uint32Array(out.buffer, out.byteOffset, 4 * 0x10000);
    const narrowed = new Uint16Array(out.buffer.slice(out.byteOffset + 16 * 0x10000, out.byteOffset + out.byteLength));
    expect(narrowed.length).toBe(4 * input.length);

    const mismatches: string[] = [];
    const report = (what: string, copy: number, input: string, got: number, want: number, digits: number) => {
      if (mismatches.length < 20) mismatches.push(`${COPIES[copy]} ${what}(${input}) = ${hex(got, digits)}, reference ${hex(want, digits)}`);
      else if (mismatches.length === 20) mismatches.push('...');
    };
    for (let h = 0; h < 0x10000; h++) {
      const f16 = f16BitsToF32Bits(h);
      const bf16 = bf16BitsToF32Bits(h);
      for (let c = 0; c < 2; c++) {
        if (widened[4 * h + c] !== f16) report('f16 -> f32', c, hex(h, 4), widened[4 * h + c], f16, 8);
        if (widened[4 * h + 2 + c] !== bf16) report('bf16 -> f32', c, hex(h, 4), widened[4 * h + 2 + c], bf16, 8);
      }
    }
    for (let i = 0; i < input.length; i++) {
      const x = asF32(input[i]);
      const bf16 = f32ToBf16Bits(x);
      const f16 = f32ToF16Bits(x);
      for (let c = 0; c < 2; c++) {
        if (narrowed[4 * i + c] !== bf16) report('f32 -> bf16', c, hex(input[i], 8), narrowed[4 * i + c], bf16, 4);
        if (narrowed[4 * i + 2 + c] !== f16) report('f32 -> f16', c, hex(input[i], 8), narrowed[4 * i + 2 + c], f16, 4);
      }
    }
    expect(mismatches).toEqual([]);
  }, 120_000);
});
