// Compiles generated CUDA translation units to objects with `nvcc -Xptxas -v` and parses what ptxas
// reports per kernel. Results are cached under .cache/cuda-compile/ by a hash of everything that affects
// them (nvcc version, flags, the unit and every header it can include), so a rerun with unchanged sources
// costs nothing. A missing nvcc is an error, never a skip: CI must notice.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { EmittedFile } from '../../codegen/backend.ts';

const run = promisify(execFile);

export const COMPILE_CACHE = resolve(new URL('../../.cache/cuda-compile', import.meta.url).pathname);

export type CudaArch = 'sm_80' | 'sm_90a';

/**
 * Flags of codegen/build.ts, plus host warnings and the ptxas report. All archs in one nvcc run: the host
 * side (most of nvcc's time) is compiled once, the device side once per arch. No include path: the unit
 * compiles in a directory holding only the module's files.
 */
export function nvccFlags(archs: readonly CudaArch[]): string[] {
  const gencode = archs.flatMap((a) => ['-gencode', `arch=compute_${a.slice(3)},code=${a}`]);
  return ['-std=c++17', '-O3', ...gencode, '-Xcompiler', '-fPIC,-Wall,-Wextra', '-Xptxas', '-v'];
}

export interface PtxasKernel {
  /** Mangled entry name. */
  readonly name: string;
  readonly arch: string;
  readonly registers: number;
  readonly stackFrame: number;
  readonly spillStores: number;
  readonly spillLoads: number;
}

export interface CompiledUnit {
  readonly unit: string;
  readonly archs: readonly CudaArch[];
  readonly kernels: readonly PtxasKernel[];
  /** Diagnostic lines of nvcc/ptxas/the host compiler that are not ptxas's -v report. */
  readonly diagnostics: readonly string[];
  /** Global symbols the object defines (nm). */
  readonly symbols: readonly string[];
  readonly cached: boolean;
}

let versionPromise: Promise<string> | undefined;

export function nvccVersion(): Promise<string> {
  versionPromise ??= run('nvcc', ['--version']).then(
    (r) => r.stdout,
    () => {
      throw new Error('nvcc was not found on PATH: the CUDA compile tests need the CUDA toolkit (nvcc 13) installed');
    },
  );
  return versionPromise;
}

/** ptxas -v output: one "Compiling entry function" line, then properties and usage lines per kernel. */
export function parsePtxas(text: string): PtxasKernel[] {
  const out: PtxasKernel[] = [];
  let cur: { name: string; arch: string; registers?: number; stackFrame?: number; spillStores?: number; spillLoads?: number } | undefined;
  const flush = () => {
    if (!cur) return;
    if (cur.registers === undefined || cur.spillStores === undefined || cur.spillLoads === undefined || cur.stackFrame === undefined)
      throw new Error(`ptxas report for ${cur.name} is incomplete`);
    out.push(cur as PtxasKernel);
    cur = undefined;
  };
  for (const line of text.split('\n')) {
    const entry = /Compiling entry function '([^']+)' for '([^']+)'/.exec(line);
    if (entry) {
      flush();
      cur = { name: entry[1], arch: entry[2] };
      continue;
    }
    if (!cur) continue;
    const props = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line);
    if (props) [cur.stackFrame, cur.spillStores, cur.spillLoads] = props.slice(1).map(Number);
    const regs = /Used (\d+) registers/.exec(line);
    if (regs) cur.registers = Number(regs[1]);
  }
  flush();
  return out;
}

/** Lines nvcc printed that are not part of ptxas's -v report: warnings, notes, errors. */
export function diagnosticLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => !/^ptxas info\s*:/.test(l) && !/^\s+\d+ bytes stack frame/.test(l));
}

async function definedSymbols(object: string): Promise<string[]> {
  const { stdout } = await run('nm', ['-g', '--defined-only', object], { maxBuffer: 64 << 20 });
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length === 3)
    .map((f) => f[2]);
}

/** Compile `unit` (one of `files`) for `archs`; the other files are its headers. */
export async function compileUnit(files: readonly EmittedFile[], unit: string, archs: readonly CudaArch[]): Promise<CompiledUnit> {
  const version = await nvccVersion();
  const flags = nvccFlags(archs);
  const headers = files.filter((f) => /\.(h|cuh)$/.test(f.path));
  const source = files.find((f) => f.path === unit);
  if (!source) throw new Error(`no emitted file ${unit}`);
  const h = createHash('sha256').update(version).update(flags.join(' ')).update(`\0${unit}\0${source.contents}`);
  for (const f of [...headers].sort((a, b) => a.path.localeCompare(b.path))) h.update(`\0${f.path}\0${f.contents}`);
  const key = h.digest('hex').slice(0, 20);
  const dir = join(COMPILE_CACHE, `${unit.replace(/\W/g, '_')}-${key}`);
  const resultFile = join(dir, 'result.json');
  if (existsSync(resultFile)) return { ...(JSON.parse(readFileSync(resultFile, 'utf8')) as CompiledUnit), cached: true };

  const tmp = `${dir}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  mkdirSync(tmp, { recursive: true });
  try {
    for (const f of files.filter((f) => f.path === unit || /\.(h|cuh)$/.test(f.path))) writeFileSync(join(tmp, f.path), f.contents);
    let stderr: string;
    try {
      stderr = (await run('nvcc', [...flags, '-c', unit, '-o', 'unit.o'], { cwd: tmp, maxBuffer: 64 << 20 })).stderr;
    } catch (e) {
      const err = e as { stderr?: string; stdout?: string };
      throw new Error(`nvcc (${archs.join(', ')}) failed on ${unit}:\n${err.stderr ?? ''}${err.stdout ?? ''}`);
    }
    const result: CompiledUnit = {
      unit,
      archs,
      kernels: parsePtxas(stderr),
      diagnostics: diagnosticLines(stderr),
      symbols: await definedSymbols(join(tmp, 'unit.o')),
      cached: false,
    };
    writeFileSync(join(tmp, 'result.json'), JSON.stringify(result));
    try {
      renameSync(tmp, dir);
    } catch {
      rmSync(tmp, { recursive: true, force: true }); // a concurrent run cached the same result
    }
    return result;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
