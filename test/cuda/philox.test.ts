// templates/common/md_philox.h and md_sampling.h under nvcc: a kernel that draws through the generator, the
// uniforms and the Gumbel noise (fdlibm exp and log) compiles for sm_80 and sm_90a with no warnings and no
// spills (their functions are __host__ __device__).
// The device's bits are checked on a GPU by the kit (test/gpu/driver.cu, test_philox: the Random123 known
// answers and the host's bits); the host's against the same vectors in test/kernels/philox.test.ts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TEMPLATES_DIR } from '../../codegen/backends/common.ts';
import { compileUnit } from './nvcc.ts';

const header = (name: string) => ({ path: name, contents: readFileSync(new URL(`common/${name}`, TEMPLATES_DIR), 'utf8') });

const UNIT = `#include <stdint.h>
#include "md_sampling.h"

__global__ void draw(uint64_t seed, const int32_t* pos, uint32_t* words, float* u, double* g, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const md_philox4 b = md_philox_block(seed, pos[i], MD_NOISE_GUMBEL, (uint32_t)i);
  const uint32_t w = md_philox_draw(seed, pos[i], MD_NOISE_ACCEPT, (uint32_t)i) ^ b.v[i & 3];
  words[i] = w;
  u[2 * i] = md_uniform01(w);
  u[2 * i + 1] = md_uniform_open01(w);
  g[i] = md_gumbel(w) + md_exp_f64(-(double)u[2 * i]);
}

extern "C" int launch(uint64_t seed, const int32_t* pos, uint32_t* words, float* u, double* g, int n) {
  draw<<<(n + 127) / 128, 128>>>(seed, pos, words, u, g, n);
  return (int)cudaGetLastError();
}
`;

describe('md_philox.h and md_sampling.h under nvcc', () => {
  it('compiles in a kernel for sm_80 and sm_90a without warnings or spills', async () => {
    const r = await compileUnit([header('md_expr.h'), header('md_philox.h'), header('md_sampling.h'), { path: 'philox.cu', contents: UNIT }], 'philox.cu', ['sm_80', 'sm_90a']);
    expect(r.diagnostics).toEqual([]);
    expect(r.kernels.map((k) => k.arch).sort()).toEqual(['sm_80', 'sm_90a']);
    for (const k of r.kernels) expect([k.spillStores, k.spillLoads], `${k.name} ${k.arch}`).toEqual([0, 0]);
    expect(r.symbols).toContain('launch');
  }, 300_000);
});
