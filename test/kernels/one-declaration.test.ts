// One declaration drives everything: a test-only kernel, declared here as a KernelSpec appended to
// codegen/abi.ts's list and given a body here, reaches every consumer of the contract with no other file
// edited: md_abi.h (function-pointer type, X-macro row), md_module.h, the manifest, the CUDA headers and
// the GPU kit's bucket tables, the CPU kernel driver, and the runtime, whose module loader (compiled
// here against the extended md_abi.h) resolves it per bucket by walking the list, and refuses a module
// that lacks it.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { KERNELS, type KernelSpec } from '../../codegen/abi.ts';
import { entryPoints, signatures } from '../../codegen/backends/contract.ts';
import { cpuBackend } from '../../codegen/backends/cpu.ts';
import { emitCuda } from '../../codegen/backends/cuda.ts';
import { renderAbiHeader } from '../../codegen/backends/header.ts';
import { buildModule } from '../../codegen/build.ts';
import { manifestText } from '../../codegen/manifest.ts';
import { planModule, type ModulePlan } from '../../codegen/plan.ts';
import { kitConfig } from '../../scripts/gpu/kit.ts';
import { makeDeployment, modelConfig } from '../support/deployments.ts';
import { BUILD, REPO, buildRuntime } from '../runtime/build-runtime.ts';
import { f32, KernelDriver } from '../harness/kernels/driver.ts';

/** The test kernel: the whole declaration. */
const PROBE: KernelSpec = {
  name: 'probe_scale',
  doc: 'y[r, i] = 2 * x[r, i] (hidden wide): a test-only kernel (test/kernels/one-declaration.test.ts)',
  perBucket: true,
  args: [
    { name: 'x', type: 'const float*', doc: '[rows, hidden]' },
    { name: 'y', type: 'float*', doc: '[rows, hidden]' },
    { name: 'rows', type: 'int32_t', doc: 'number of rows', check: 'count' },
    { name: 'stream', type: 'void*', doc: 'cudaStream_t on CUDA; ignored on CPU', nullable: true },
  ],
};
const KERNELS_WITH_PROBE = [...KERNELS, PROBE];

/** The test kernel's body, the one other thing a new kernel needs: signature and checks come rendered. */
function probeUnit(plan: ModulePlan) {
  const sig = signatures([PROBE], { unnamedStream: true }).probe_scale;
  const defs = entryPoints(plan, PROBE.name).map(
    (k) => `extern "C" int ${k.symbol}(${sig}) {\n${k.checks}\n  for (size_t i = 0; i < (size_t)rows * HIDDEN; ++i) y[i] = 2.0f * x[i];\n  return MD_OK;\n}`,
  );
  return { path: 'probe.cpp', contents: ['#include "md_cpu.h"', 'using namespace md;', '', ...defs, ''].join('\n') };
}

const dep = makeDeployment({ model: modelConfig({ numHeads: 2, numKvHeads: 2, headDim: 16 }), batch: [1, 2], maxSeq: 64, pageSize: 4, dtype: 'fp32' });
const plan = planModule(dep, KERNELS_WITH_PROBE);
const H = plan.dims.hidden;

/**
 * runtime/src/module.cpp compiled against the extended md_abi.h, with a main that loads a module, calls
 * the test kernel of its largest bucket through the runtime's table and prints the result; linked with the
 * rest of the runtime's core library. Cached by content under .cache/one-declaration.
 */
function loaderProgram(): string {
  const main = `#include <cstdio>
#include <vector>
#include "error.h"
#include "module.h"
int main(int argc, char** argv) {
  if (argc != 2) return 2;
  try {
    md::Module m(argv[1]);
    const md::BucketKernels& b = m.largest_bucket();
    std::vector<float> x(2 * ${H}), y(2 * ${H}, -1.0f);
    for (size_t i = 0; i < x.size(); ++i) x[i] = (float)i;
    const int status = b.probe_scale(x.data(), y.data(), 2, nullptr);
    std::printf("bucket %d status %d y[1] %g y[last] %g\\n", b.bucket, status, y[1], y.back());
    return 0;
  } catch (const md::Error& e) {
    std::printf("error: %s\\n", e.what());
    return 1;
  }
}
`;
  const header = renderAbiHeader(KERNELS_WITH_PROBE);
  const sources = ['module.cpp', 'module.h'].map((f) => readFileSync(join(REPO, 'runtime/src', f), 'utf8'));
  const key = createHash('sha256').update(main).update(header).update(sources.join('\0')).update(readFileSync(join(BUILD, 'libmagicdec_core.a'))).digest('hex').slice(0, 16);
  const dir = join(REPO, '.cache/one-declaration', key);
  const exe = join(dir, 'loader');
  if (existsSync(exe)) return exe;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'md_abi.h'), header);
  writeFileSync(join(dir, 'main.cpp'), main);
  const tmp = `${exe}.tmp-${process.pid}`;
  const src = join(REPO, 'runtime/src');
  try {
    // The extended md_abi.h comes first on the include path; the core library supplies everything else.
    execFileSync('g++', ['-std=c++17', '-O0', '-Wall', '-Wextra', '-Werror', `-I${dir}`, `-I${src}`, `-I${join(REPO, 'runtime/generated')}`, join(dir, 'main.cpp'), join(src, 'module.cpp'), join(BUILD, 'libmagicdec_core.a'), join(BUILD, 'libmagicdec_simdjson.a'), '-ldl', '-pthread', '-o', tmp], { stdio: 'pipe' });
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`g++ failed on the test loader:\n${(e as { stderr?: Buffer }).stderr?.toString() ?? String(e)}`);
  }
  renameSync(tmp, exe);
  return exe;
}

const runLoader = (library: string) => {
  const exe = loaderProgram();
  try {
    return execFileSync(exe, [library], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    const out = (e as { stdout?: string }).stdout;
    if (typeof out !== 'string') throw e;
    return out.trim();
  }
};

let library: string;
let plainLibrary: string;
beforeAll(async () => {
  buildRuntime();
  library = (await buildModule({ name: plan.name, files: [...cpuBackend.emit(plan), probeUnit(plan)], target: 'cpu' })).library;
  const plain = planModule(dep);
  plainLibrary = (await buildModule({ name: plain.name, files: cpuBackend.emit(plain), target: 'cpu' })).library;
}, 600_000);

describe('a kernel declared once, in a test', () => {
  it('is in md_abi.h (type and X-macro row), md_module.h and the manifest, on both backends', () => {
    const cpu = new Map(cpuBackend.emit(plan).map((f) => [f.path, f.contents]));
    const cuda = new Map(emitCuda({ ...plan, deployment: { ...plan.deployment, arch: 'sm_90' } }).map((f) => [f.path, f.contents]));
    for (const files of [cpu, cuda]) {
      expect(files.get('md_abi.h')).toContain('typedef int (*md_probe_scale_fn)(const float* x, float* y, int32_t rows, void* stream);');
      expect(files.get('md_abi.h')).toMatch(/#define MD_BUCKET_KERNELS\(X\)[^]*X\(probe_scale, probe_scale\)/);
      for (const b of plan.buckets) expect(files.get('md_module.h')).toContain(`int md_probe_scale_b${b}(const float* x, float* y, int32_t rows, void* stream);`);
    }
    const manifest = JSON.parse(manifestText(plan)) as { kernels: { symbol: string }[] };
    expect(manifest.kernels.map((k) => k.symbol)).toEqual(expect.arrayContaining(plan.buckets.map((b) => `md_probe_scale_b${b}`)));
    expect(kitConfig({ ...plan, deployment: { ...plan.deployment, arch: 'sm_90' } })).toContain(
      `static const md_probe_scale_fn KIT_PROBE_SCALE[] = {${plan.buckets.map((b) => `md_probe_scale_b${b}`).join(', ')}};`,
    );
  });

  it('is served by the kernel driver of the extended list, with the contract argument checks', async () => {
    const driver = KernelDriver.open(library, {}, KERNELS_WITH_PROBE);
    try {
      const x = Float32Array.from({ length: 3 * H }, (_, i) => i - 7.5);
      const res = await driver.call('md_probe_scale_b1', { x, y: { out: 3 * H * 4 }, rows: 3 });
      expect(res.status).toBe(0);
      expect(Array.from(f32(res.out.y))).toEqual(Array.from(x, (v) => 2 * v));
      const bound = plan.kernels.find((k) => k.symbol === 'md_probe_scale_b1')!.maxRows!;
      expect((await driver.call('md_probe_scale_b1', { x: new Float32Array((bound + 1) * H), y: { out: 4 }, rows: bound + 1 })).status).toBe(1);
      expect((await driver.call('md_probe_scale_b1', { x: null, y: { out: 4 }, rows: 1 })).status).toBe(1);
    } finally {
      driver.close();
    }
  });

  it("is resolved by the runtime's module loader from the list, per bucket, and required of every module", () => {
    const last = 2 * H - 1;
    expect(runLoader(library)).toBe(`bucket ${Math.max(...plan.buckets)} status 0 y[1] 2 y[last] ${2 * last}`);
    expect(runLoader(plainLibrary)).toBe(`error: ${plainLibrary}: module does not export 'md_probe_scale_b1' (not a magicdec module, or built for another ABI)`);
  });
});
