// The GPU kit (scripts/gpu/kit.ts) is written completely and its driver builds against a generated module
// with nvcc, with its CPU sampling reference (compile and link; running it needs a GPU: scripts/gpu/run.sh).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REF_RENAMES, writeKit } from '../../scripts/gpu/kit.ts';
import { nvccVersion } from './nvcc.ts';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'md-gpu-kit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('GPU kit', () => {
  const names = writeKit(dir);

  it('writes every module with its config, the driver, CMakeLists.txt and run.sh', () => {
    expect(names.length).toBeGreaterThanOrEqual(4);
    for (const f of ['CMakeLists.txt', 'driver.cu', 'run.sh', 'modules.txt']) expect(existsSync(join(dir, f))).toBe(true);
    expect(readFileSync(join(dir, 'modules.txt'), 'utf8').trim().split('\n')).toEqual(names);
    for (const n of names) {
      const files = readdirSync(join(dir, 'modules', n));
      for (const f of ['kit_config.h', 'md_attn_draft.cu', 'md_abi.h', 'md_expr.h', 'md_argmax.h', 'md_philox.h']) expect(files).toContain(f);
    }
    const dtypes = names.map((n) => n.split('_')[1]);
    expect(new Set(dtypes)).toEqual(new Set(['fp32', 'bf16', 'fp16']));
  });

  it('builds the driver against a generated module (bf16, sm_90a) without warnings, with no include path but the module', async () => {
    await nvccVersion();
    const mod = join(dir, 'modules', names.find((n) => n.includes('bf16'))!);
    const srcs = readdirSync(mod).filter((f) => f.endsWith('.cu'));
    // ref/: the CPU backend's sampling kernels, entry points renamed, that the driver holds md_sample to.
    const ref = await run('g++', ['-std=c++17', '-O1', '-ffp-contract=off', '-Wall', '-Wextra', '-Wno-unknown-pragmas', '-Iref', ...REF_RENAMES.map((d) => `-D${d}`), '-c', 'ref/sample.cpp', '-o', 'ref.o'], { cwd: mod });
    expect(ref.stderr.trim()).toBe('');
    const { stderr } = await run(
      'nvcc',
      ['-std=c++17', '-O1', '-arch=sm_90a', '-Xcompiler', '-Wall,-Wextra', '-I.', join(dir, 'driver.cu'), ...srcs, 'ref.o', '-o', 'driver'],
      { cwd: mod, maxBuffer: 64 << 20 },
    );
    expect(stderr.trim()).toBe('');
    expect(existsSync(join(mod, 'driver'))).toBe(true);
  }, 300_000);
});
