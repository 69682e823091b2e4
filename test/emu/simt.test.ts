// The SIMT emulator itself (templates/cuda/md_simt_emu.h), through test/harness/emu/simt-check.cu: barrier
// semantics (a result that needs the barrier is right under every schedule, and the same kernel without
// it gives different results under different schedules), every shuffle, vote and reduction against the
// CUDA documentation's definitions, md_cuda.cuh's warp and block sums, 3-D indices, shared memory private
// to a block and poisoned at its start, dynamic shared memory and its 48 KiB opt-in, cp.async landing
// only at its wait, atomics, launch configuration errors, stream capture through a queue; and that each
// kind of synchronisation bug is refused with a message naming it, the failure sticky like a CUDA
// context's. bf16/fp16 conversions are bit-exact with model/dtypes.ts (NaN: CUDA's canonical 0x7fff).
import { execFileSync, spawnSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { bf16BitsToF32Bits, f16BitsToF32Bits, f32ToBf16Bits, f32ToF16Bits } from '../../model/dtypes.ts';
import { simtCheckExecutable } from '../harness/emu/module.ts';

let exe = '';
const results = new Map<string, string>();
beforeAll(() => {
  exe = simtCheckExecutable();
  const out = execFileSync(exe, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  for (const line of out.trim().split('\n')) {
    const m = /^([\w-]+): (.*)$/.exec(line);
    if (m) results.set(m[1], m[2]);
  }
}, 120_000);

const result = (name: string) => {
  expect(results.has(name), `case ${name} ran`).toBe(true);
  return results.get(name)!;
};

describe('SIMT emulator: semantics', () => {
  for (const [name, what] of [
    ['barrier', '__syncthreads orders shared-memory writes before reads, under forward, reverse and shuffled schedules'],
    ['race-shows', 'without the barrier the forward and reverse schedules disagree: the race shows'],
    ['tree-sum', 'a barrier-per-level shared-memory reduction is exact under every schedule'],
    ['shuffles', '__shfl/up/down/xor with widths, ballot/any/all, __reduce_*, md_group_sum, a half-warp mask, 8-byte values'],
    ['block-collectives', 'md_block_sum and __syncthreads_count/and/or'],
    ['indices', '3-D threadIdx/blockIdx/blockDim/gridDim'],
    ['shared-poisoned-per-block', "a block's __shared__ memory is its own and starts as NaN poison"],
    ['dynamic-shared', 'dynamic shared memory is poisoned at block start and shared by the block'],
    ['launch-config', 'more than 48 KiB of dynamic shared memory needs the opt-in; 1025 threads fail; config errors are not sticky'],
    ['cp-async', 'cp.async lands at the wait_group that covers its commit group, not before'],
    ['atomics', 'atomicAdd / atomicMax / atomicOr over many blocks'],
    ['ldg-aligned', 'an aligned 16-byte __ldg'],
    ['sticky-failure', 'a refused kernel makes later calls fail until reset, as a faulted CUDA context'],
    ['stream-capture', "a stream queue's capture: work runs at replay with its submitted arguments, host waits fail, allocations are the graph's"],
    ['mma-m16n8k16', 'md_mma_16816_bf16 (mma.sync m16n8k16 bf16) in the PTX ISA fragment layouts: D = C + A.B exactly on integers'],
    ['mma-m16n8k16-f16', 'md_mma_16816_f16 (mma.sync m16n8k16 f16) in the same layouts: D = C + A.B exactly on halves bf16 cannot hold'],
  ] as const)
    it(what, () => expect(result(name)).toBe('ok'));
});

describe('SIMT emulator: synchronisation bugs are refused, with a message', () => {
  for (const [name, pattern] of [
    ['divergent-shuffle', /divergent warp collective: .*lane 0\] waits at __shfl_xor_sync at .*simt-check\.cu:\d+ .* while lane 16 of its mask waits at __shfl_xor_sync at .*simt-check\.cu:\d+/],
    ['barrier-in-branch', /waits at __syncthreads at .*, which block \(0,0,0\) thread \(32,0,0\) .* never reaches: it has exited/],
    ['two-barriers', /threads of one block wait at different barriers: .*simt-check\.cu:(\d+), .*simt-check\.cu:(?!\1)\d+/],
    ['barrier-after-exit', /thread \(64,0,0\) .*never reaches: it has exited/],
    ['mask-without-caller', /mask 00000001 does not name the calling lane 1/],
    ['mask-past-block', /mask ffffffff names lanes past the block's last thread \(this warp has 8\)/],
    ['exit-before-shuffle', /names lane 0, which has exited/],
    ['warp-vs-block', /divergent warp collective: .* waits at __syncwarp .* while lane 16 of its mask waits at __syncthreads/],
    ['shuffle-outside-mask', /__shfl_sync .*mask 0000ffff.* reads lane 20, which is not in the mask/],
    ['ldg-misaligned', /__ldg of 16 bytes at 0x[0-9a-f]+ is misaligned/],
    ['mma-half-warp', /mma\.sync\.m16n8k16 .*mask ffffffff names lanes past the block's last thread \(this warp has 16\)/],
  ] as const)
    it(name, () => {
      const r = result(name);
      expect(r.startsWith('error md-simt-emu: kernel k_'), r).toBe(true);
      expect(r).toMatch(pattern);
    });

  it('a bad MD_SIMT_EMU_SCHEDULE is a one-line error and exit status 2', () => {
    for (const value of ['sideways', 'shuffle:x']) {
      const r = spawnSync(exe, { encoding: 'utf8', env: { ...process.env, MD_SIMT_EMU_SCHEDULE: value } });
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(`MD_SIMT_EMU_SCHEDULE=${value}`);
    }
  });

  it('MD_SIMT_EMU_HOST_WAITS=fail refuses synchronisations and blocking or device-to-host copies, as graph capture does', () => {
    const waits = (value?: string) => {
      const env = { ...process.env, MD_SIMT_EMU_HOST_WAITS: value };
      if (value === undefined) delete env.MD_SIMT_EMU_HOST_WAITS;
      return spawnSync(exe, ['host-waits'], { encoding: 'utf8', env });
    };
    const refused = 'StreamSynchronize=refused DeviceSynchronize=refused Memcpy=refused MemcpyAsync-DtoH=refused';
    const fail = waits('fail');
    expect(fail.stdout.trim()).toBe(`host-waits: ${refused} MemcpyAsync-HtoD=ok MemcpyAsync-DtoD=ok MemsetAsync=ok`);
    expect(fail.stderr).toMatch(/^md-simt-emu: cudaStreamSynchronize waits for the device inside an entry point/);
    for (const allowed of [waits(), waits('allow')]) expect(allowed.stdout.trim()).toMatch(/^host-waits:( \S+=ok){7}$/);
    const bad = waits('sometimes');
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toContain('MD_SIMT_EMU_HOST_WAITS=sometimes');
  });

  it('by default a refused kernel aborts the process with the message', () => {
    // The check program switches to status mode itself; MD_SIMT_EMU_ON_ERROR=abort is the default for modules.
    const r = spawnSync(exe, ['abort-demo'], { encoding: 'utf8' });
    expect(r.signal).toBe('SIGABRT');
    expect(r.stderr).toMatch(/^md-simt-emu: kernel k_divergent_shfl: divergent warp collective/);
  });
});

describe('SIMT emulator: storage conversions', () => {
  it('bf16 and fp16 narrowing and widening are bit-exact with model/dtypes.ts (NaN: 0x7fff, as cuda_bf16.h / cuda_fp16.h)', () => {
    const words: number[] = [0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x00000001, 0x80000001, 0x007fffff];
    // Every rounding boundary near fp16's and bf16's edges, then a spread of random words.
    for (const base of [0x33000000, 0x33800000, 0x38800000, 0x387fe000, 0x477fe000, 0x477ff000, 0x47800000, 0x3f808000, 0x3f818000, 0x7f7f8000])
      for (let d = -3; d <= 3; d++) words.push((base + d) >>> 0);
    let s = 0x9e3779b9;
    for (let i = 0; i < 20000; i++) {
      s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
      words.push(s);
    }
    const out = execFileSync(exe, ['convert'], { input: words.map((w) => w.toString(16)).join('\n') + '\n', encoding: 'utf8', maxBuffer: 64 << 20 });
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(words.length);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    const bad: string[] = [];
    lines.forEach((line, i) => {
      const [bf, hf, bw, hw] = line.split(' ').map((x) => parseInt(x, 16));
      u[0] = words[i];
      const nan = Number.isNaN(f[0]);
      const wantBf = nan ? 0x7fff : f32ToBf16Bits(f[0]);
      const wantHf = nan ? 0x7fff : f32ToF16Bits(f[0]);
      const h = words[i] & 0xffff;
      const widenOk = bw === bf16BitsToF32Bits(h) && hw === f16BitsToF32Bits(h);
      if (bf !== wantBf || hf !== wantHf || !widenOk) bad.push(`${words[i].toString(16)}: ${line}`);
    });
    expect(bad.slice(0, 5)).toEqual([]);
  });
});
