// Compiles a single-file C++ test program against templates/common, cached under .cache/expr-harness by
// a hash of the source, md_expr.h, the flags and the compiler version: an unchanged test never
// recompiles. The binary is written under a temporary name and renamed, so concurrent or interrupted runs
// never leave a half-written executable in the cache.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '../../..');
export const COMMON_DIR = join(ROOT, 'templates/common');
const CACHE = join(ROOT, '.cache/expr-harness');

/** The flags the differential tests compile with: IEEE f32, no contraction into FMAs. */
export const HARNESS_FLAGS = ['-std=c++17', '-O2', '-ffp-contract=off', '-march=native', `-I${COMMON_DIR}`];

let compilerId: string | undefined;

/** Path of an executable built from `source`; `name` is the readable part of the cache entry. */
export function compileProgram(name: string, source: string): string {
  compilerId ??= execFileSync('g++', ['--version'], { encoding: 'utf8' });
  const h = createHash('sha256').update(compilerId).update(HARNESS_FLAGS.join(' ')).update(source);
  for (const f of readdirSync(COMMON_DIR).sort()) h.update(`\0${f}\0`).update(readFileSync(join(COMMON_DIR, f)));
  const dir = join(CACHE, `${name}-${h.digest('hex').slice(0, 16)}`);
  const exe = join(dir, name);
  if (existsSync(exe)) return exe;

  mkdirSync(dir, { recursive: true });
  const src = join(dir, `${name}.cpp`);
  writeFileSync(src, source);
  const tmp = `${exe}.tmp-${process.pid}`;
  try {
    execFileSync('g++', [...HARNESS_FLAGS, '-o', tmp, src], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    rmSync(tmp, { force: true });
    const err = e as { stderr?: string };
    throw new Error(`g++ failed on ${src}:\n${(err.stderr ?? String(e)).slice(0, 4000)}`);
  }
  renameSync(tmp, exe);
  return exe;
}

/** Run a compiled program with `input` on stdin; its stdout. */
export function runProgram(exe: string, input: string): string {
  return execFileSync(exe, [], { input, encoding: 'utf8', maxBuffer: 1 << 30 });
}
