// CUDA modules built for the SIMT emulator (codegen/build.ts `emulate`, templates/cuda/md_simt_emu.h) and
// served by the same kernel driver as the CPU modules (test/harness/kernels/driver.ts): an emulated
// module is a shared library of the very entry points and kernel bodies nvcc compiles, whose device
// memory is host memory, so the driver's buffers are the kernels' device pointers.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { emitCuda } from '../../../codegen/backends/cuda.ts';
import { buildModule } from '../../../codegen/build.ts';
import { planModule, type ModulePlan } from '../../../codegen/plan.ts';
import type { DeploymentIR } from '../../../codegen/spec.ts';
import { makeDeployment } from '../../support/deployments.ts';
import { KernelDriver } from '../kernels/driver.ts';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '../../..');

/** A deployment retargeted to a GPU (the kernel test deployments are written for the CPU). */
export function onGpu(dep: DeploymentIR, arch: 'sm_80' | 'sm_90' = 'sm_90'): DeploymentIR {
  return { ...dep, arch };
}

export interface EmulatedModule {
  readonly plan: ModulePlan;
  readonly library: string;
  /** The driver under the default schedule (forward). */
  readonly driver: KernelDriver;
  /** Another driver of the same library under MD_SIMT_EMU_SCHEDULE (opened on first use). */
  withSchedule(schedule: string): KernelDriver;
  close(): void;
}

let asanRuntime: string | undefined;

/**
 * What a process that loads a sanitized emulated module needs: g++'s ASan runtime preloaded (the driver
 * itself is not instrumented), leak checking off (the driver's buffers live until exit), every report fatal.
 */
export function sanitizerEnv(): Record<string, string> {
  asanRuntime ??= execFileSync('g++', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim();
  if (!asanRuntime.startsWith('/')) throw new Error(`g++ has no ASan runtime (g++ -print-file-name=libasan.so gave '${asanRuntime}')`);
  return { LD_PRELOAD: asanRuntime, ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=0', UBSAN_OPTIONS: 'print_stacktrace=1' };
}

/**
 * The module of `dep` built for the emulator with ASan and UBSan (codegen/build.ts `sanitize`), so that an
 * out-of-bounds read or write of a kernel fails its call with the sanitizer's report, and under
 * MD_SIMT_EMU_HOST_WAITS=fail, so that an entry point that waits for the device (a synchronisation or a
 * device-to-host copy) kills the driver.
 */
export async function openEmulatedModule(dep: DeploymentIR): Promise<EmulatedModule> {
  if (dep.arch === 'cpu') throw new Error('openEmulatedModule takes a CUDA deployment (onGpu)');
  const plan = planModule(dep);
  const { library } = await buildModule({ name: plan.name, files: emitCuda(plan), target: dep.arch, emulate: true, sanitize: true });
  // The driver calls only entry points, so any host wait is one of theirs: refused, as graph capture would.
  const env = { ...sanitizerEnv(), MD_SIMT_EMU_HOST_WAITS: 'fail' };
  const drivers = new Map<string, KernelDriver>([['forward', KernelDriver.open(library, env)]]);
  return {
    plan,
    library,
    driver: drivers.get('forward')!,
    withSchedule(schedule: string) {
      let d = drivers.get(schedule);
      if (!d) drivers.set(schedule, (d = KernelDriver.open(library, { ...env, MD_SIMT_EMU_SCHEDULE: schedule })));
      return d;
    },
    close: () => drivers.forEach((d) => d.close()),
  };
}

/** For a test file: every deployment's emulated module, built before its tests, closed after. */
export function useEmulatedModules<N extends string>(deployments: Readonly<Record<N, DeploymentIR>>): ReadonlyMap<N, EmulatedModule> {
  const modules = new Map<N, EmulatedModule>();
  beforeAll(async () => {
    for (const n of Object.keys(deployments) as N[]) modules.set(n, await openEmulatedModule(deployments[n]));
  }, 600_000);
  afterAll(() => modules.forEach((m) => m.close()));
  return modules;
}

const CHECK_FLAGS = ['-std=c++17', '-O1', '-x', 'c++', '-DMD_SIMT_EMU', '-ffp-contract=off', '-Wall', '-Wextra', '-Wno-unknown-pragmas', '-Werror'];

/**
 * test/harness/emu/simt-check.cu built against a CUDA module's headers (md_cuda.cuh, md_simt_emu.h, ...),
 * cached under .cache/emu-check/ by a hash of the sources, the flags and g++.
 */
export function simtCheckExecutable(): string {
  const source = join(ROOT, 'test/harness/emu/simt-check.cu');
  // Any CUDA module: the check program needs only the headers every one carries.
  const headers = emitCuda(planModule(onGpu(makeDeployment()))).filter((f) => /\.(h|cuh)$/.test(f.path));
  const h = createHash('sha256').update(execFileSync('g++', ['--version'], { encoding: 'utf8' })).update(CHECK_FLAGS.join(' '));
  h.update(readFileSync(source));
  for (const f of headers) h.update(`\0${f.path}\0${f.contents}`);
  const dir = join(ROOT, '.cache/emu-check', h.digest('hex').slice(0, 16));
  const exe = join(dir, 'simt-check');
  if (existsSync(exe)) return exe;
  const tmp = `${dir}.tmp-${process.pid}`;
  mkdirSync(tmp, { recursive: true });
  try {
    for (const f of headers) writeFileSync(join(tmp, f.path), f.contents);
    execFileSync('g++', [...CHECK_FLAGS, `-I${tmp}`, source, '-o', join(tmp, 'simt-check'), '-ldl'], { stdio: ['ignore', 'pipe', 'pipe'] });
    mkdirSync(dirname(dir), { recursive: true });
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (existsSync(exe)) return exe; // a concurrent build won
    throw new Error(`g++ failed on ${source}:\n${(e as { stderr?: Buffer }).stderr?.toString() ?? String(e)}`);
  }
  return exe;
}
