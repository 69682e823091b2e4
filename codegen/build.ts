// Compiles a module's sources into a shared library, in a cache directory keyed by a readable name plus a
// hash of everything that affects the binary (sources, compiler, flags, what -march=native resolves to).
// An unchanged module never recompiles; a build is written to a temporary directory and renamed into
// place, so a failed or interrupted build never leaves a half-written cache entry. Object files are cached
// too, per translation unit, so a module that differs only in its manifest (a new runtime param value)
// relinks without recompiling a single kernel.
import { createHash } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { $, ProcessOutput } from 'zx';
import type { Target } from '../dsl/deploy.ts';
import type { EmittedFile } from './backend.ts';
import { comparePaths, fsErrorText } from './module.ts';

// Compiler invocations through zx: arguments are quoted for us, and a failure carries the compiler's stderr.
const sh = (cwd?: string) => $({ cwd, quiet: true });
const stderrOf = (e: unknown) => (e instanceof ProcessOutput ? e.stderr : String(e));

export const DEFAULT_CACHE = resolve(dirname(new URL(import.meta.url).pathname), '../.cache/modules');

export interface BuildOptions {
  /** Readable part of the cache directory name (the module name). */
  readonly name: string;
  readonly files: readonly EmittedFile[];
  readonly target: Target;
  /**
   * Build a CUDA module's sources as host C++ for the SIMT emulator (templates/cuda/md_simt_emu.h) instead
   * of with nvcc: the same kernel bodies, run on the CPU (docs/ARCHITECTURE.md, "The SIMT emulator").
   */
  readonly emulate?: boolean;
  /**
   * With `emulate`: build with AddressSanitizer and UndefinedBehaviorSanitizer (every error fatal), so an
   * out-of-bounds access of a kernel, shared-memory arrays included, stops it. The process that loads
   * the library must preload the ASan runtime (LD_PRELOAD=`g++ -print-file-name=libasan.so`).
   */
  readonly sanitize?: boolean;
  readonly cacheDir?: string;
  /** Called after each translation unit compiles (done, total, file). */
  readonly onProgress?: (done: number, total: number, file: string) => void;
}

export interface BuiltModule {
  readonly dir: string;
  readonly library: string;
  readonly cached: boolean;
  /** Translation units compiled by this call (the others came from the object cache). */
  readonly compiled: readonly string[];
}

export class BuildError extends Error {}

/**
 * Host flags: -march=native is chosen here at build time, never written into generated sources. No
 * include path: a module directory holds every header its units include.
 */
const SANITIZERS = ['-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-fno-omit-frame-pointer'];

function compilerFor(target: Target, emulate = false, sanitize = false): { cc: string; compile: string[]; link: string[]; units: RegExp } {
  if (sanitize && !emulate) throw new BuildError('sanitize is for builds for the SIMT emulator');
  if (emulate) {
    if (target === 'cpu') throw new BuildError('only a CUDA module (sm_80, sm_90) builds for the SIMT emulator');
    // -O1: these builds are for tests, where compile time dominates; no -march: nothing is tuned here.
    const san = sanitize ? SANITIZERS : [];
    const flags = ['-std=c++17', '-O1', '-x', 'c++', '-DMD_SIMT_EMU', '-ffp-contract=off', '-fPIC', '-Wno-unknown-pragmas', ...san];
    return { cc: 'g++', compile: flags, link: ['-shared', ...san, '-ldl'], units: /\.cu$/ };
  }
  if (target === 'cpu') {
    const flags = ['-std=c++17', '-O3', '-march=native', '-fopenmp', '-ffp-contract=off', '-fPIC'];
    return { cc: 'g++', compile: flags, link: ['-shared', '-fopenmp'], units: /\.cpp$/ };
  }
  const arch = target === 'sm_90' ? 'sm_90a' : 'sm_80';
  const flags = ['-std=c++17', '-O3', `-arch=${arch}`, '-Xcompiler', '-fPIC'];
  // The runtime links the shared cudart: a module linking its own static copy would have a second CUDA runtime state.
  return { cc: 'nvcc', compile: flags, link: ['-shared', `-arch=${arch}`, '-cudart', 'shared'], units: /\.(cu|cpp)$/ };
}

async function compilerVersion(cc: string): Promise<string> {
  try {
    return (await sh()`${cc} --version`).stdout;
  } catch {
    throw new BuildError(`compiler '${cc}' was not found on PATH`);
  }
}

let nativeTarget: Promise<string> | undefined;

/**
 * What `-march=native` means on this machine: g++'s resolved target options (ISA extensions, tuning),
 * hashed. Asked once per process. Without it in the cache keys, a cache directory shared between hosts
 * could hand one CPU objects built for another's instruction set.
 */
export function nativeTargetHash(): Promise<string> {
  nativeTarget ??= sh()`g++ -march=native -Q --help=target`.then(
    (o) => createHash('sha256').update(o.stdout).digest('hex').slice(0, 16),
    (e) => {
      nativeTarget = undefined;
      throw new BuildError(`could not ask g++ what -march=native means here:\n${stderrOf(e)}`);
    },
  );
  return nativeTarget;
}

/** Everything about the toolchain a build depends on: compiler version, flags, and the resolved native target. */
export async function toolchainKey(target: Target, emulate = false, sanitize = false): Promise<string> {
  const tc = compilerFor(target, emulate, sanitize);
  const version = await compilerVersion(tc.cc);
  const native = target === 'cpu' ? [`native-target:${await nativeTargetHash()}`] : [];
  return [version, ...tc.compile, ...native].join(' ');
}

/** Hash of `extra` and the files, in code-unit path order (never locale order: the same on every machine). */
export function sourcesHash(files: readonly EmittedFile[], extra: string): string {
  const h = createHash('sha256').update(extra);
  for (const f of [...files].sort((a, b) => comparePaths(a.path, b.path))) h.update(`\0${f.path}\0${f.contents}`);
  return h.digest('hex').slice(0, 16);
}

export async function buildModule(opts: BuildOptions): Promise<BuiltModule> {
  try {
    return await buildModuleIn(opts);
  } catch (e) {
    // A cache path the file system refuses (a file in the way, read-only, full) is the user's to fix.
    const why = fsErrorText(e);
    if (why === undefined) throw e;
    throw new BuildError(`cannot use the build cache ${opts.cacheDir ?? DEFAULT_CACHE}: ${why}`);
  }
}

/**
 * Sequence number of this process's temporaries: builds running at once in one process (a server and a
 * test, two engines) each write their own `<name>.tmp-<pid>-<n>`, never each other's.
 */
let tempSeq = 0;
const tempSuffix = () => `.tmp-${process.pid}-${++tempSeq}`;

/** Matches a build's temporary names: `<module dir>.tmp-<pid>-<n>` and `<object>.o.tmp-<pid>-<n>`. */
const TEMP_NAME = /\.tmp-(\d+)-\d+$/;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';  // alive, someone else's
  }
}

/**
 * Takes `<module dir>.lock` (its content: the holder's pid) for building a module, so that concurrent
 * builds of one module (test files running in parallel, two commands) compile it once: a second builder
 * waits, and returns 'built' once the first one's library exists; a lock whose process is gone is taken
 * over. Returns the release function otherwise.
 */
async function buildLock(dir: string, library: string): Promise<(() => void) | 'built'> {
  const lock = `${dir}.lock`;
  const mine = `${lock}.tmp-${process.pid}-${Date.now()}`; // written whole, then linked: never a half lock
  writeFileSync(mine, String(process.pid));
  try {
    for (;;) {
      try {
        linkSync(mine, lock);
        return () => rmSync(lock, { force: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      let owner: number;
      try {
        owner = Number(readFileSync(lock, 'utf8'));
      } catch {
        continue; // released in between
      }
      if (!processAlive(owner)) {
        rmSync(lock, { force: true });
        continue;
      }
      await new Promise((r) => setTimeout(r, 200));
      if (existsSync(library)) return 'built';
    }
  } finally {
    rmSync(mine, { force: true });
  }
}

/**
 * Removes what builds killed mid-way (SIGTERM, SIGKILL) left in `cache`: temporary module directories and
 * partial objects whose process is gone. A live process's temporaries are its own and are kept.
 */
export function removeStaleTemps(cache: string): string[] {
  const removed: string[] = [];
  for (const dir of [cache, join(cache, 'objects')]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const m = TEMP_NAME.exec(name);
      if (!m || Number(m[1]) === process.pid || processAlive(Number(m[1]))) continue;
      rmSync(join(dir, name), { recursive: true, force: true });
      removed.push(join(dir, name));
    }
  }
  return removed;
}

async function buildModuleIn(opts: BuildOptions): Promise<BuiltModule> {
  const tc = compilerFor(opts.target, opts.emulate, opts.sanitize);
  const toolchain = await toolchainKey(opts.target, opts.emulate, opts.sanitize);
  const hash = sourcesHash(opts.files, [toolchain, ...tc.link].join(' '));
  // Absolute: compilers run in the build's temporary directory, where a relative cache path means something else.
  const cache = resolve(opts.cacheDir ?? DEFAULT_CACHE);
  const dir = join(cache, `${opts.name}${opts.emulate ? (opts.sanitize ? '.emu-san' : '.emu') : ''}-${hash}`);
  const library = join(dir, 'libmodule.so');
  if (existsSync(library)) return { dir, library, cached: true, compiled: [] };
  const objectsDir = join(cache, 'objects');
  mkdirSync(objectsDir, { recursive: true });
  removeStaleTemps(cache);
  const release = await buildLock(dir, library);
  if (release === 'built') return { dir, library, cached: true, compiled: [] };
  try {
    return await buildLocked(opts, tc, toolchain, cache, dir, library, objectsDir);
  } finally {
    release();
  }
}

async function buildLocked(
  opts: BuildOptions,
  tc: ReturnType<typeof compilerFor>,
  toolchain: string,
  cache: string,
  dir: string,
  library: string,
  objectsDir: string,
): Promise<BuiltModule> {
  if (existsSync(library)) return { dir, library, cached: true, compiled: [] }; // built while we waited for the lock
  // An object depends on its unit, every header it may include (all in the module), and the toolchain.
  const headers = opts.files.filter((f) => /\.(h|hpp|cuh)$/.test(f.path));

  const tmp = `${dir}${tempSuffix()}`;
  mkdirSync(tmp, { recursive: true });
  try {
    for (const f of opts.files) {
      mkdirSync(dirname(join(tmp, f.path)), { recursive: true });
      writeFileSync(join(tmp, f.path), f.contents);
    }
    const units = opts.files.filter((f) => tc.units.test(f.path)).map((f) => f.path);
    let done = 0;
    const compiled: string[] = [];
    const objects = await pool(units, Math.max(1, cpus().length), async (unit) => {
      const source = opts.files.find((f) => f.path === unit)!;
      const obj = join(objectsDir, `${sourcesHash([source, ...headers], `${unit}\0${toolchain}`)}.o`);
      if (!existsSync(obj)) {
        const part = `${obj}${tempSuffix()}`;
        try {
          await sh(tmp)`${tc.cc} ${tc.compile} -c ${unit} -o ${part}`;
          renameSync(part, obj);
        } catch (e) {
          rmSync(part, { force: true });
          throw new BuildError(`${tc.cc} failed on ${unit}:\n${stderrOf(e)}`);
        }
        compiled.push(unit);
      }
      opts.onProgress?.(++done, units.length, unit);
      return obj;
    });
    try {
      await sh(tmp)`${tc.cc} ${tc.link} ${objects} -o libmodule.so`;
    } catch (e) {
      throw new BuildError(`linking ${opts.name} failed:\n${stderrOf(e)}`);
    }
    mkdirSync(cache, { recursive: true });
    try {
      renameSync(tmp, dir);
    } catch (e) {
      // Another process finished the same build first: theirs is identical.
      if (!existsSync(library)) throw e;
      rmSync(tmp, { recursive: true, force: true });
    }
    return { dir, library, cached: false, compiled };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Run `work` over `items` with at most `width` in flight, keeping input order. */
export async function pool<T, R>(items: readonly T[], width: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return out;
}
