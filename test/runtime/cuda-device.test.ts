// The runtime's CUDA device layer (runtime/src/device_cuda.cpp) where there may be no GPU: it compiles with
// nvcc and links against the CUDA runtime, the CMake option MAGICDEC_CUDA builds it, and the errors a
// machine without a usable GPU gets are one clear line. A missing nvcc is an error, never a skip: CI must
// notice. The default build (no MAGICDEC_CUDA) says through the C API and the Node API that it cannot run
// CUDA modules on a GPU, and refuses a GPU module before resolving its kernels (failure-isolation.test.ts).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRuntime, REPO, runProgram, type RuntimeBuild } from './build-runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'md-cuda-device-'));
const src = join(REPO, 'runtime/src');
let rt: RuntimeBuild;

beforeAll(() => {
  rt = buildRuntime();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const NO_CUDA = 'this runtime was built without CUDA (configure it with -DMAGICDEC_CUDA=ON on a machine with the CUDA toolkit)';
/** What find_gpu (device_cuda.cpp) says when there is no GPU to run on. */
const NO_GPU = /^(no NVIDIA driver is loaded \(libcuda\.so not found\): no GPU to run on|no CUDA GPU found \(check CUDA_VISIBLE_DEVICES and the driver\)|the NVIDIA driver supports CUDA \d+\.\d+, older than this runtime's CUDA \d+\.\d+ \(update the driver\))$/;

describe('the CUDA device layer', () => {
  it('compiles with nvcc (-Wall -Wextra -Werror), links against the CUDA runtime, and explains a missing GPU', () => {
    const exe = join(root, 'probe');
    const units = ['device_cuda.cpp', 'device_host.cpp'].map((f) => join(src, f));
    execFileSync('nvcc', ['-std=c++17', '-DMD_HAVE_CUDA=1', `-I${src}`, `-I${join(REPO, 'generated/contract')}`, '-Xcompiler', '-Wall,-Wextra,-Werror', '-o', exe, ...units, join(REPO, 'test/runtime/cuda_probe.cpp')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const [available, opened] = execFileSync(exe, { encoding: 'utf8' }).trim().split('\n');
    if (available === 'available 1 ') {
      // A GPU: an H200 (9.0) opens an sm_90 device; another GPU is refused naming both targets.
      expect(opened).toMatch(/^(device cuda:\d+ \(.*, module sm_90\)|error m\.so: built for sm_90, which needs compute capability 9\.0 exactly \(sm_90a code\); GPU \d+ .* is compute capability \d+\.\d+ )/);
    } else {
      const why = available.replace(/^available 0 /, '');
      expect(why).toMatch(NO_GPU);
      expect(opened).toBe(`error m.so: built for sm_90, but ${why}`);
    }
  });

  it('MAGICDEC_CUDA=ON configures with the CUDA toolkit and compiles the device layer into the runtime core', () => {
    const build = join(root, 'cmake');
    execFileSync('cmake', ['-S', join(REPO, 'runtime'), '-B', build, '-G', 'Ninja', '-DMAGICDEC_CUDA=ON', '-DMAGICDEC_TESTS=OFF'], { stdio: 'pipe' });
    const out = execFileSync('ninja', ['-C', build, '-j1', 'CMakeFiles/magicdec_core.dir/src/device_cuda.cpp.o', 'CMakeFiles/magicdec_core.dir/src/module.cpp.o'], { encoding: 'utf8' });
    expect(out).toContain('device_cuda.cpp.o');
  });

  it('the default build says, through the C API and the Node API, that it runs no CUDA module on a GPU', async () => {
    expect(runProgram(rt.capi, ['cuda'])).toEqual({ status: 0, stdout: `0: ${NO_CUDA}\n` });
    const { cudaAvailable } = await import('../../runtime/node/index.ts');
    expect(cudaAvailable()).toEqual({ available: false, reason: NO_CUDA });
  });
});
