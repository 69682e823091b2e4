// The GPU kit's driver (test/gpu/driver.cu, written by scripts/gpu/kit.ts) run, unchanged, on the CPU
// under the SIMT emulator: built with g++ -x c++ -DMD_SIMT_EMU (ASan + UBSan) against each kit module's
// sources, it performs every check it performs on a GPU — float64 references, poisoned outputs, bitwise
// row invariance, the fused LM head against gemm + argmax, Philox on the "device", md_sample and
// md_verify_sample against the CPU backend's kernels — and must report PASS.
// So the kit's own code has run before any GPU time is spent on it. Two of the kit's modules, one per
// arch (bf16 sm_90: sliding window, softcap, window policy; fp32 sm_80: ALiBi, prefix-LM, MHA with
// biases): the driver's code is the same for all, and test/emu/dense and attention cover the kernels of
// every dtype; the `small` module (hidden 512, vocab 4096, 4096 positions) would take minutes.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { pool } from '../../codegen/build.ts';
import { REF_RENAMES, writeKit } from '../../scripts/gpu/kit.ts';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'md-gpu-kit-emu-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FLAGS = ['-std=c++17', '-O1', '-x', 'c++', '-DMD_SIMT_EMU', '-ffp-contract=off', '-Wall', '-Wextra', '-Wno-unknown-pragmas'];
const SANITIZE = ['-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-fno-omit-frame-pointer'];

describe('GPU kit under the SIMT emulator', () => {
  const all = writeKit(dir);
  const names = [all.find((n) => n.includes('bf16') && n.includes('tiny')), all.find((n) => n.includes('fp32') && !n.includes('tiny'))].filter((n) => n !== undefined);

  it('two kit modules (bf16 sm_90, fp32 sm_80) pass all of the driver checks', async () => {
    expect(names).toHaveLength(2);
    const results = await pool(names, Math.max(1, Math.min(2, cpus().length)), async (name) => {
      const mod = join(dir, 'modules', name);
      const srcs = readdirSync(mod).filter((f) => f.endsWith('.cu'));
      // The CPU backend's sampling kernels, entry points renamed: the reference of md_sample / md_verify_sample.
      const ref = await run('g++', ['-std=c++17', '-O1', '-ffp-contract=off', '-Wall', '-Wextra', '-Wno-unknown-pragmas', ...SANITIZE, '-Iref', ...REF_RENAMES.map((d) => `-D${d}`), '-c', 'ref/sample.cpp', '-o', 'ref.o'], { cwd: mod });
      const built = await run('g++', [...FLAGS, ...SANITIZE, '-I.', join(dir, 'driver.cu'), ...srcs, '-x', 'none', 'ref.o', '-o', 'driver-emu', '-ldl'], { cwd: mod, maxBuffer: 64 << 20 });
      expect(ref.stderr.trim(), `${name}: g++ warnings (ref/sample.cpp)`).toBe('');
      const out = await run(join(mod, 'driver-emu'), [], { cwd: mod, maxBuffer: 64 << 20, env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0' } }).catch(
        (e: { stdout?: string; stderr?: string; code?: number }) => ({ stdout: `${e.stdout ?? ''}`, stderr: `exit ${e.code}: ${e.stderr ?? ''}` }),
      );
      return { name, warnings: built.stderr.trim(), stdout: out.stdout, stderr: out.stderr };
    });
    for (const r of results) {
      expect(r.warnings, `${r.name}: g++ warnings`).toBe('');
      const last = r.stdout.trim().split('\n').pop() ?? '';
      console.log(`GPU kit under emulation, ${r.name}: ${last}`);
      expect(last, `${r.name}:\n${r.stdout.split('\n').filter((l) => l.includes('FAIL')).slice(0, 10).join('\n')}\n${r.stderr.slice(0, 2000)}`).toMatch(/^PASS: \d+ checks, 0 failed$/);
    }
  }, 1_200_000);
});
