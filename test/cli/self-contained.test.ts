// A module directory written by `magicdec gen` is self-contained: moved away from the checkout, every
// `#include "..."` of its files names a file beside it, a CPU module compiles and links there with no
// include path and serves its manifest, and a CUDA module's units preprocess there with nvcc.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryIo } from '../../lib/io.ts';
import { main } from '../../cli/main.ts';
import { KernelDriver } from '../harness/kernels/driver.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const tmp = mkdtempSync(join(tmpdir(), 'md-self-contained-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** `gen` into a fresh directory, then the directory moved elsewhere; returns where it now is. */
async function genMoved(name: string, ...args: string[]): Promise<string> {
  const io = memoryIo();
  const out = join(tmp, 'out', name);
  expect(await main(['gen', ...args, '--out', out], io), io.err()).toBe(0);
  const moved = join(tmp, 'elsewhere', name);
  mkdirSync(join(tmp, 'elsewhere'), { recursive: true });
  renameSync(out, moved);
  return moved;
}

/** `#include "x"` names that are not a file of `dir`, as "file: x". */
function missingIncludes(dir: string): string[] {
  const files = new Set(readdirSync(dir));
  return [...files].flatMap((f) =>
    [...readFileSync(join(dir, f), 'utf8').matchAll(/^\s*#\s*include\s+"([^"]+)"/gm)].map((m) => m[1]).filter((h) => !files.has(h)).map((h) => `${f}: ${h}`),
  );
}

describe('a module directory written by gen', () => {
  it('cpu: builds where it was moved, without an include path, and serves its manifest', async () => {
    const dir = await genMoved('cpu', join(ROOT, 'examples/streaming-draft.ts'));
    expect(missingIncludes(dir)).toEqual([]);
    const units = readdirSync(dir).filter((f) => f.endsWith('.cpp'));
    await run('g++', ['-std=c++17', '-O1', '-fopenmp', '-ffp-contract=off', '-fPIC', '-shared', '-o', 'libmodule.so', ...units], { cwd: dir, maxBuffer: 64 << 20 });
    const driver = KernelDriver.open(join(dir, 'libmodule.so'));
    try {
      expect(await driver.manifest()).toBe(readFileSync(join(dir, 'manifest.json'), 'utf8'));
      expect(await driver.statusString(1)).toBe('invalid argument');
    } finally {
      driver.close();
    }
  }, 300_000);

  it('cuda: every unit preprocesses with nvcc where it was moved, without an include path', async () => {
    const dir = await genMoved('cuda', join(ROOT, 'examples/streaming-draft.ts'), '--target', 'sm_80');
    expect(missingIncludes(dir)).toEqual([]);
    const units = readdirSync(dir).filter((f) => f.endsWith('.cu'));
    expect(units.length).toBeGreaterThan(3);
    for (const u of units) await run('nvcc', ['-std=c++17', '-arch=sm_80', '-E', '-o', '/dev/null', u], { cwd: dir, maxBuffer: 64 << 20 });
  }, 300_000);
});
