// The benchmark's bandwidth yardstick: bench/triad.cpp compiled at bench time with the CPU modules' host
// flags (nothing prebuilt is committed; the executable is cached under out/bench/triad/ by a hash of its
// source, the compiler version and the flags) and run in the benchmark's own process environment, so it
// uses the same OpenMP thread count as the decode cases.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const SOURCE = join(HERE, 'triad.cpp');
export const TRIAD_CACHE = resolve(HERE, '../out/bench/triad');
/** The CPU modules' optimisation flags (codegen/build.ts), so the triad streams with the same ISA. */
const FLAGS = ['-std=c++17', '-O3', '-march=native', '-fopenmp'];
/** STREAM's rule: each array at least 4x the last-level cache; never below this floor. */
const MIN_ARRAY_BYTES = 128 * 2 ** 20;
export const DEFAULT_TRIAD_REPS = 10;

export interface TriadResult {
  /** OpenMP threads the triad ran with (omp_get_max_threads). */
  readonly threads: number;
  readonly arrayBytes: number;
  readonly reps: number;
  /** 3 arrays x arrayBytes: what one repetition is credited with, as STREAM counts. */
  readonly bytesPerRep: number;
  readonly bestS: number;
  readonly meanS: number;
  /** bytesPerRep / bestS / 1e9 (decimal GB/s, as STREAM reports MB/s). */
  readonly gbPerS: number;
}

function fail(what: string, e: unknown): never {
  const err = e as { stderr?: Buffer | string; message?: string };
  throw new Error(`${what}: ${String(err.stderr ?? '').trim() || err.message || String(e)}`);
}

/** Compiles bench/triad.cpp unless an identical build is cached; returns the executable's path. */
export function buildTriad(cacheDir: string = TRIAD_CACHE): string {
  let version: string;
  try {
    version = execFileSync('g++', ['--version'], { encoding: 'utf8' });
  } catch (e) {
    fail("the triad needs g++ on PATH, which failed", e);
  }
  const hash = createHash('sha256').update(`${version}\0${FLAGS.join(' ')}\0`).update(readFileSync(SOURCE)).digest('hex').slice(0, 16);
  const exe = join(cacheDir, `triad-${hash}`);
  if (existsSync(exe)) return exe;
  mkdirSync(cacheDir, { recursive: true });
  const part = `${exe}.tmp-${process.pid}`;
  try {
    execFileSync('g++', [...FLAGS, SOURCE, '-o', part], { stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(part, exe); // atomic: a concurrent build of the same hash writes an identical file
  } catch (e) {
    rmSync(part, { force: true });
    fail(`g++ failed on ${SOURCE}`, e);
  }
  return exe;
}

interface CacheLevel {
  readonly level: number;
  readonly bytes: number;
  /** CPUs sharing this cache instance (sysfs shared_cpu_list), which identifies the instance. */
  readonly shared: string;
}

/** The data/unified cache of the highest level one CPU's sysfs cache directory lists. */
function lastLevelOf(cpuCacheDir: string): CacheLevel | undefined {
  let best: CacheLevel | undefined;
  for (const d of readdirSync(cpuCacheDir).filter((x) => /^index\d+$/.test(x))) {
    const read = (f: string) => readFileSync(join(cpuCacheDir, d, f), 'utf8').trim();
    if (read('type') === 'Instruction') continue;
    const level = Number(read('level'));
    const m = /^(\d+)([KMG]?)$/.exec(read('size'));
    if (!m || !Number.isInteger(level)) continue;
    const bytes = Number(m[1]) * { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }[m[2] as '' | 'K' | 'M' | 'G'];
    if (!best || level > best.level || (level === best.level && bytes > best.bytes)) best = { level, bytes, shared: read('shared_cpu_list') };
  }
  return best;
}

/**
 * Total bytes of the last-level caches the machine's CPUs use, each instance once (STREAM sizes its arrays
 * against the sum of all last-level caches), from Linux sysfs; undefined when unreadable.
 */
export function lastLevelCacheBytes(sysCpuDir = '/sys/devices/system/cpu'): number | undefined {
  try {
    const instances = new Map<string, number>();
    for (const cpu of readdirSync(sysCpuDir).filter((x) => /^cpu\d+$/.test(x))) {
      const cacheDir = join(sysCpuDir, cpu, 'cache');
      if (!existsSync(cacheDir)) continue;
      const llc = lastLevelOf(cacheDir);
      if (llc) instances.set(`${llc.level}:${llc.shared}`, llc.bytes);
    }
    return instances.size ? [...instances.values()].reduce((a, b) => a + b, 0) : undefined;
  } catch {
    return undefined;
  }
}

/** Bytes per array: 4x the last-level cache (STREAM's rule), at least 128 MiB. */
export function defaultTriadArrayBytes(llc: number | undefined = lastLevelCacheBytes()): number {
  return Math.max(MIN_ARRAY_BYTES, 4 * (llc ?? 0));
}

/** Runs the triad once (reps repetitions, best reported) and parses its result. */
export function runTriad(exe: string, arrayBytes: number = defaultTriadArrayBytes(), reps: number = DEFAULT_TRIAD_REPS): TriadResult {
  if (!Number.isSafeInteger(arrayBytes) || arrayBytes < 64) throw new Error(`triad: bytes per array must be a whole number >= 64, got ${arrayBytes}`);
  if (!Number.isSafeInteger(reps) || reps < 1) throw new Error(`triad: repetitions must be a whole number >= 1, got ${reps}`);
  let out: string;
  try {
    out = execFileSync(exe, [String(arrayBytes), String(reps)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    fail(`triad ${exe} failed`, e);
  }
  const r = JSON.parse(out) as TriadResult;
  if (!(r.gbPerS > 0) || !(r.threads >= 1)) throw new Error(`triad ${exe}: implausible result ${out.trim()}`);
  return r;
}
