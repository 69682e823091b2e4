// Builds the runtime (C API library, C/C++ test programs, Node addon) with cmake-js, the way npm's install
// script does, once per test process and serialised across vitest workers by a lock directory.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BUILD = join(REPO, 'runtime/build');

export interface RuntimeBuild {
  readonly addon: string;
  readonly capi: string;
  readonly unit: string;
  readonly lib: string;
}

let built: RuntimeBuild | undefined;

function withLock<T>(f: () => T): T {
  mkdirSync(BUILD, { recursive: true });
  const lock = join(BUILD, '.test-lock');
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock older than the longest build is left over from a killed run.
      if (existsSync(lock) && Date.now() - statSync(lock).mtimeMs > 10 * 60_000) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`);
      execFileSync('sleep', ['0.5']);
    }
  }
  try {
    return f();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

export function buildRuntime(): RuntimeBuild {
  if (built) return built;
  withLock(() => {
    execFileSync('npx', ['cmake-js', 'compile', '-d', 'runtime', '--log-level', 'error'], { cwd: REPO, stdio: 'pipe' });
  });
  built = {
    addon: join(BUILD, 'magicdec_node.node'),
    capi: join(BUILD, 'capi_test'),
    unit: join(BUILD, 'unit_tests'),
    lib: join(BUILD, 'libmagicdec.so'),
  };
  return built;
}

/** Runs a built program; returns its exit status and stdout (never throws on a non-zero exit). */
export function runProgram(file: string, args: readonly string[]): { status: number; stdout: string } {
  try {
    return { status: 0, stdout: execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (e) {
    const err = e as { status?: number; stdout?: string };
    return { status: err.status ?? -1, stdout: err.stdout ?? '' };
  }
}
