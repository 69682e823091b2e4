// Checks of the SIMT emulator itself (templates/cuda/md_simt_emu.h), driven by test/emu/simt.test.ts. CUDA
// source: g++ builds it with -DMD_SIMT_EMU against a module's headers, and nvcc compiles its kernels for
// sm_80 and sm_90a (the same test file), so every kernel here is real CUDA. Each case prints one line, `<case>: ok`, `<case>: FAIL
// <why>` or, for a kernel the emulator must refuse, `<case>: error <the emulator's message>`; the test
// matches those messages. `abort-demo` runs one refused kernel in the default mode (abort). `convert` reads float32 bit patterns (hex, one a line) from stdin and
// prints `<bf16> <fp16>` bits for each (conversions checked against model/dtypes.ts).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <utility>
#include <vector>

#include "md_cuda.cuh"

#define FULL 0xffffffffu

// ------------------------------------------------------------------------------------------ kernels

/** out[i] = in[(i + 1) % n] within a block, through shared memory: right only with the barrier. */
template <bool BARRIER>
__global__ void k_rotate(const int* in, int* out) {
  __shared__ int s[256];
  const int t = threadIdx.x, base = blockIdx.x * blockDim.x;
  s[t] = in[base + t];
  if (BARRIER) __syncthreads();
  out[base + t] = s[(t + 1) % blockDim.x];
}

/** A shared-memory tree sum with a barrier per level: out[b] = sum of the block's inputs. */
__global__ void k_tree_sum(const int* in, int* out) {
  __shared__ int s[256];
  const int t = threadIdx.x;
  s[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half >>= 1) {
    if (t < half) s[t] += s[t + half];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

/** Every shuffle flavour and width; out[op * 32 + lane]. */
__global__ void k_shuffles(int* out) {
  const int lane = threadIdx.x, v = 100 + lane;
  int op = 0;
  out[op++ * 32 + lane] = __shfl_sync(FULL, v, 7);
  out[op++ * 32 + lane] = __shfl_sync(FULL, v, lane + 3, 8);  // srcLane modulo width, within the segment
  out[op++ * 32 + lane] = __shfl_up_sync(FULL, v, 3);
  out[op++ * 32 + lane] = __shfl_up_sync(FULL, v, 2, 16);
  out[op++ * 32 + lane] = __shfl_down_sync(FULL, v, 5);
  out[op++ * 32 + lane] = __shfl_down_sync(FULL, v, 1, 4);
  out[op++ * 32 + lane] = __shfl_xor_sync(FULL, v, 9);
  out[op++ * 32 + lane] = __shfl_xor_sync(FULL, v, 4, 4);  // outside the group of 4: earlier readable, later own
  out[op++ * 32 + lane] = (int)__ballot_sync(FULL, lane % 3 == 0);
  out[op++ * 32 + lane] = __any_sync(FULL, lane == 31);
  out[op++ * 32 + lane] = __all_sync(FULL, lane < 31);
  out[op++ * 32 + lane] = __reduce_add_sync(FULL, lane);
  out[op++ * 32 + lane] = __reduce_max_sync(FULL, lane == 5 ? -7 : (int)lane - 40);
  out[op++ * 32 + lane] = (int)md_group_sum<32>((float)lane);   // md_cuda.cuh's fixed butterfly
  out[op++ * 32 + lane] = (int)md_group_sum<8>((float)lane);
  // Half the warp: a mask of lanes 0-15 only.
  if (lane < 16) out[op * 32 + lane] = __shfl_xor_sync(0x0000ffffu, v, 1);
  else out[op * 32 + lane] = -1;
  ++op;
  const double d = __shfl_sync(FULL, 0.5 + lane, 31 - lane);  // 8-byte values
  out[op++ * 32 + lane] = (int)(d * 2);
}

__global__ void k_block_sum(float* out) {
  __shared__ float scratch[4 + 1];
  out[threadIdx.x] = md_block_sum<128>((float)threadIdx.x, scratch);
}

__global__ void k_sync_votes(int* out) {
  const int t = threadIdx.x;
  const int c = __syncthreads_count(t % 5 == 0);
  const int a = __syncthreads_and(t < 1000);
  const int o = __syncthreads_or(t == 77);
  const int none = __syncthreads_or(0);
  if (t == 0) out[0] = c, out[1] = a, out[2] = o, out[3] = none;
}

/** 3-D blocks and grids: out[global linear id] = the built-in variables packed. */
__global__ void k_indices(int* out) {
  const int tl = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int bl = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int n = blockDim.x * blockDim.y * blockDim.z;
  out[bl * n + tl] = (int)(threadIdx.x | threadIdx.y << 4 | threadIdx.z << 8 | blockIdx.x << 12 | blockIdx.y << 16 | blockIdx.z << 20);
}

/** Block 0 writes its shared array; every block reads its own: block 1 must see poison, not block 0's data. */
__global__ void k_shared_isolation(float* out) {
  __shared__ float s[64];
  if (blockIdx.x == 0) s[threadIdx.x] = 1.0f;
  __syncthreads();
  out[blockIdx.x * 64 + threadIdx.x] = s[threadIdx.x];
}

/** Dynamic shared memory: poisoned before the first write, then shared by the block. */
__global__ void k_dynamic(float* out) {
  float* s = md_dynamic_smem<float>();
  const int t = threadIdx.x, n = blockDim.x;
  out[2 * n * blockIdx.x + t] = s[t];  // before any write: poison
  __syncthreads();
  s[t] = (float)(t + 1000 * blockIdx.x);
  __syncthreads();
  out[2 * n * blockIdx.x + n + t] = s[n - 1 - t];
}

/** cp.async: nothing lands before the wait that covers its group. out: before, after wait<1>, after wait<0>. */
__global__ void k_cp_async(const float* g, float* out) {
  __shared__ __align__(16) float a[128], b[128];
  const int t = threadIdx.x;  // 32 threads, 4 floats each
  md_cp_async16(&a[4 * t], &g[4 * t]);
  md_cp_async_commit();
  md_cp_async16(&b[4 * t], &g[128 + 4 * t]);
  md_cp_async_commit();
  out[t] = a[4 * t];
  out[32 + t] = b[4 * t];
  md_cp_async_wait<1>();
  out[64 + t] = a[4 * t];
  out[96 + t] = b[4 * t];
  md_cp_async_wait<0>();
  __syncthreads();
  out[128 + t] = a[(4 * t + 4) % 128];  // another thread's copy, after the barrier
  out[160 + t] = b[4 * t];
}

__global__ void k_atomics(int* sum, unsigned long long* best, int* orr) {
  const int id = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(sum, id);
  atomicMax(best, (unsigned long long)((id * 7919) % 1000));
  atomicOr(orr, 1 << (id % 31));
}

__global__ void k_ldg(const float* p, float* out, int offset) {
  float4 v = __ldg(reinterpret_cast<const float4*>(p + offset));
  out[threadIdx.x] = v.x;
}

/**
 * One m16n8k16 tile through md_mma_16816_bf16 (F16: md_mma_16816_f16): A [16][16] row-major, B [16][8]
 * (B[k][n] at k * 8 + n) and C [16][8] loaded into fragments straight from the PTX ISA's text (row/column
 * conditions per element), D stored back the same way.
 */
template <bool F16>
__global__ void k_mma(const unsigned short* A, const unsigned short* B, const float* C, float* D) {
  const int lane = threadIdx.x, group = lane >> 2, tig = lane % 4;
  uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  float c[4], d[4];
  for (int i = 0; i < 8; ++i) {
    const int row = (i < 2 || (i >= 4 && i < 6)) ? group : group + 8;
    const int col = i < 4 ? tig * 2 + (i & 0x1) : tig * 2 + (i & 0x1) + 8;
    a[i / 2] |= (uint32_t)A[row * 16 + col] << (i % 2 == 0 ? 0 : 16);
  }
  for (int i = 0; i < 4; ++i) {
    const int row = i < 2 ? tig * 2 + (i & 0x1) : tig * 2 + (i & 0x1) + 8, col = group;
    b[i / 2] |= (uint32_t)B[row * 8 + col] << (i % 2 == 0 ? 0 : 16);
  }
  for (int i = 0; i < 4; ++i) c[i] = C[(i < 2 ? group : group + 8) * 8 + tig * 2 + (i & 0x1)];
  if (F16) md_mma_16816_f16(d, a, b, c);
  else md_mma_16816_bf16(d, a, b, c);
  for (int i = 0; i < 4; ++i) D[(i < 2 ? group : group + 8) * 8 + tig * 2 + (i & 0x1)] = d[i];
}

// Kernels the emulator must refuse (each a bug on a GPU).
__global__ void k_divergent_shfl(int* out) {
  const int lane = threadIdx.x & 31;
  int v = lane;
  if (lane < 16) v = __shfl_xor_sync(FULL, v, 1);
  else v = __shfl_xor_sync(FULL, v, 2);
  out[threadIdx.x] = v;
}
__global__ void k_barrier_in_branch(int* out) {
  if (threadIdx.x < 32) __syncthreads();
  out[threadIdx.x] = 1;
}
__global__ void k_two_barriers(int* out) {
  if (threadIdx.x < 32) {
    out[threadIdx.x] = 1;
    __syncthreads();
  } else {
    out[threadIdx.x] = 2;
    __syncthreads();
  }
}
__global__ void k_barrier_after_exit(int* out) {
  if (threadIdx.x >= 64) return;
  out[threadIdx.x] = 1;
  __syncthreads();
}
__global__ void k_mask_without_caller(int* out) { out[threadIdx.x] = __shfl_sync(0x1u, (int)threadIdx.x, 0); }
__global__ void k_mask_past_block(int* out) { out[threadIdx.x] = __shfl_xor_sync(FULL, (int)threadIdx.x, 1); }
__global__ void k_exit_before_shfl(int* out) {
  if (threadIdx.x == 0) return;
  out[threadIdx.x] = __shfl_xor_sync(FULL, (int)threadIdx.x, 1);
}
__global__ void k_warp_vs_block(int* out) {
  if ((threadIdx.x & 31) < 16) __syncwarp();
  else __syncthreads();
  out[threadIdx.x] = 1;
}
__global__ void k_shfl_outside_mask(int* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0x0000ffffu, (int)threadIdx.x, 20);
}

#ifndef MD_SIMT_EMU
// Under nvcc only the kernels are compiled (the driver below runs them under the emulator).
template __global__ void k_rotate<true>(const int*, int*);
template __global__ void k_rotate<false>(const int*, int*);
template __global__ void k_mma<false>(const unsigned short*, const unsigned short*, const float*, float*);
template __global__ void k_mma<true>(const unsigned short*, const unsigned short*, const float*, float*);
#else
// ------------------------------------------------------------------------------------------- driver

constexpr int SHUFFLE_OPS = 17;  // outputs of k_shuffles per lane

static void line(const char* name, const std::string& what) { printf("%s: %s\n", name, what.c_str()); }

template <typename T>
static T* dev(size_t n) {
  T* p = nullptr;
  if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) {
    printf("cudaMalloc failed\n");
    exit(2);
  }
  return p;
}

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/** Runs `launch` expecting the emulator to refuse it: prints its message, then forgets the failure. */
template <typename F>
static void expect_error(const char* name, F launch) {
  md_emu::reset_error();
  launch();
  const cudaError_t e = cudaGetLastError();
  if (e != cudaErrorLaunchFailure) line(name, "FAIL the launch succeeded (cudaGetLastError " + std::to_string(e) + ")");
  else if (cudaGetLastError() != cudaErrorLaunchFailure) line(name, "FAIL the failure is not sticky");
  else line(name, "error " + md_emu::last_message());
  md_emu::reset_error();
}

static void check_rotate() {
  const int B = 3, T = 96;
  int* in = dev<int>(B * T);
  int* out = dev<int>(B * T);
  for (int i = 0; i < B * T; ++i) in[i] = 7 * i + 1;
  std::string why;
  const md_emu::Schedule schedules[] = {md_emu::FORWARD, md_emu::REVERSE, md_emu::SHUFFLE};
  for (md_emu::Schedule s : schedules) {
    md_emu::set_schedule(s, 12345);
    MD_LAUNCH(B, T, 0, nullptr, k_rotate<true>)(in, out);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t)
        if (out[b * T + t] != in[b * T + (t + 1) % T] && why.empty()) why = "schedule " + std::to_string(s) + ": wrong value at " + std::to_string(t);
  }
  // Without the barrier the result depends on the schedule: forward reads poison, reverse the values.
  md_emu::set_schedule(md_emu::FORWARD);
  MD_LAUNCH(B, T, 0, nullptr, k_rotate<false>)(in, out);
  const int fwd = out[0];
  md_emu::set_schedule(md_emu::REVERSE);
  MD_LAUNCH(B, T, 0, nullptr, k_rotate<false>)(in, out);
  const int rev = out[0];
  md_emu::set_schedule(md_emu::FORWARD);
  if (why.empty() && !(fwd == -1 && rev == in[1])) why = "the race did not show: forward " + std::to_string(fwd) + ", reverse " + std::to_string(rev);
  line("barrier", why.empty() ? "ok" : "FAIL " + why);
  line("race-shows", fwd == -1 && rev == in[1] ? "ok" : "FAIL forward " + std::to_string(fwd) + " reverse " + std::to_string(rev));
  cudaFree(in);
  cudaFree(out);
}

static void check_tree_sum() {
  const int B = 5, T = 256;
  int* in = dev<int>(B * T);
  int* out = dev<int>(B);
  long want[B] = {};
  for (int i = 0; i < B * T; ++i) in[i] = (i * 37) % 101 - 50, want[i / T] += in[i];
  std::string why;
  for (int s = 0; s < 3; ++s) {
    md_emu::set_schedule((md_emu::Schedule)s, 99);
    MD_LAUNCH(B, T, 0, nullptr, k_tree_sum)(in, out);
    for (int b = 0; b < B; ++b)
      if (out[b] != want[b]) why = "block " + std::to_string(b) + ": " + std::to_string(out[b]) + " != " + std::to_string(want[b]);
  }
  md_emu::set_schedule(md_emu::FORWARD);
  line("tree-sum", why.empty() ? "ok" : "FAIL " + why);
}

static void check_shuffles() {
  int* out = dev<int>(SHUFFLE_OPS * 32);
  MD_LAUNCH(1, 32, 0, nullptr, k_shuffles)(out);
  std::string why;
  auto want = [&](int op, int lane, int v) {
    if (out[op * 32 + lane] != v && why.empty())
      why = "op " + std::to_string(op) + " lane " + std::to_string(lane) + ": " + std::to_string(out[op * 32 + lane]) + " != " + std::to_string(v);
  };
  int ballot = 0;
  for (int l = 0; l < 32; ++l) ballot |= (l % 3 == 0) << l;
  for (int l = 0; l < 32; ++l) {
    const int v = 100 + l;
    want(0, l, 107);
    want(1, l, 100 + (l & ~7) + ((l + 3) & 7));
    want(2, l, l >= 3 ? v - 3 : v);
    want(3, l, (l & 15) >= 2 ? v - 2 : v);
    want(4, l, l + 5 < 32 ? v + 5 : v);
    want(5, l, (l & 3) < 3 ? v + 1 : v);
    want(6, l, 100 + (l ^ 9));
    want(7, l, (l ^ 4) < (l & ~3) + 4 ? 100 + (l ^ 4) : v);  // an earlier group is readable, a later one gives its own
    want(8, l, ballot);
    want(9, l, 1);
    want(10, l, 0);
    want(11, l, 496);
    want(12, l, -7);  // lanes give lane - 40 (at most -9) except lane 5's -7
    want(13, l, 496);
    want(14, l, 8 * (l & ~7) + 28);
    want(15, l, l < 16 ? 100 + (l ^ 1) : -1);
    want(16, l, 2 * (31 - l) + 1);
  }
  line("shuffles", why.empty() ? "ok" : "FAIL " + why);
  cudaFree(out);
}

static void check_block_collectives() {
  float* out = dev<float>(128);
  MD_LAUNCH(1, 128, 0, nullptr, k_block_sum)(out);
  std::string why;
  for (int t = 0; t < 128; ++t)
    if (out[t] != 8128.0f) why = "md_block_sum gave " + std::to_string(out[t]) + " at thread " + std::to_string(t);
  int* v = dev<int>(4);
  MD_LAUNCH(1, 200, 0, nullptr, k_sync_votes)(v);
  if (why.empty() && !(v[0] == 40 && v[1] == 1 && v[2] == 1 && v[3] == 0))
    why = "__syncthreads_count/and/or gave " + std::to_string(v[0]) + " " + std::to_string(v[1]) + " " + std::to_string(v[2]) + " " + std::to_string(v[3]);
  line("block-collectives", why.empty() ? "ok" : "FAIL " + why);
  cudaFree(out);
  cudaFree(v);
}

static void check_indices() {
  const dim3 grid(3, 2, 2), block(4, 3, 5);
  const int n = 60, ctas = 12;
  int* out = dev<int>(n * ctas);
  MD_LAUNCH(grid, block, 0, nullptr, k_indices)(out);
  std::string why;
  for (int b = 0; b < ctas; ++b)
    for (int t = 0; t < n; ++t) {
      const int tx = t % 4, ty = t / 4 % 3, tz = t / 12, bx = b % 3, by = b / 3 % 2, bz = b / 6;
      const int want = tx | ty << 4 | tz << 8 | bx << 12 | by << 16 | bz << 20;
      if (out[b * n + t] != want && why.empty()) why = "block " + std::to_string(b) + " thread " + std::to_string(t);
    }
  line("indices", why.empty() ? "ok" : "FAIL " + why);
  cudaFree(out);
}

static void check_memory() {
  float* out = dev<float>(2 * 64);
  MD_LAUNCH(2, 64, 0, nullptr, k_shared_isolation)(out);
  std::string why;
  for (int t = 0; t < 64; ++t) {
    if (out[t] != 1.0f) why = "block 0 lost its own shared values";
    if (bits(out[64 + t]) != 0xffffffffu) why = "block 1 saw block 0's shared memory (or zeros), not poison";
  }
  line("shared-poisoned-per-block", why.empty() ? "ok" : "FAIL " + why);

  const int T = 48;
  float* d = dev<float>(2 * 2 * T);
  MD_LAUNCH(2, T, T * sizeof(float), nullptr, k_dynamic)(d);
  why.clear();
  if (cudaGetLastError() != cudaSuccess) why = "launch failed";
  for (int b = 0; b < 2 && why.empty(); ++b)
    for (int t = 0; t < T; ++t) {
      if (bits(d[2 * T * b + t]) != 0xffffffffu) why = "dynamic shared memory not poisoned at block start";
      if (d[2 * T * b + T + t] != (float)(T - 1 - t + 1000 * b)) why = "dynamic shared memory not shared by the block";
    }
  line("dynamic-shared", why.empty() ? "ok" : "FAIL " + why);
  // More than 48 KiB of dynamic shared memory needs the opt-in, as on a GPU.
  why.clear();
  MD_LAUNCH(1, T, 64 * 1024, nullptr, k_dynamic)(d);
  if (cudaGetLastError() != cudaErrorInvalidConfiguration) why = "64 KiB without cudaFuncSetAttribute was accepted";
  cudaFuncSetAttribute(k_dynamic, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024);
  MD_LAUNCH(1, T, 64 * 1024, nullptr, k_dynamic)(d);
  if (why.empty() && cudaGetLastError() != cudaSuccess) why = "64 KiB with the opt-in was refused";
  MD_LAUNCH(1, 1025, 0, nullptr, k_dynamic)(d);
  if (why.empty() && cudaGetLastError() != cudaErrorInvalidConfiguration) why = "a block of 1025 threads was accepted";
  if (why.empty() && cudaGetLastError() != cudaSuccess) why = "a configuration error is sticky";
  line("launch-config", why.empty() ? "ok" : "FAIL " + why);

  float* g = dev<float>(256);
  for (int i = 0; i < 256; ++i) g[i] = (float)i;
  float* o = dev<float>(192);
  MD_LAUNCH(1, 32, 0, nullptr, k_cp_async)(g, o);
  why.clear();
  for (int t = 0; t < 32; ++t) {
    if (bits(o[t]) != 0xffffffffu || bits(o[32 + t]) != 0xffffffffu) why = "a copy landed before its wait";
    if (o[64 + t] != (float)(4 * t)) why = "wait_group 1 did not land the older group";
    if (bits(o[96 + t]) != 0xffffffffu) why = "wait_group 1 landed the newest group";
    if (o[128 + t] != (float)((4 * t + 4) % 128) || o[160 + t] != (float)(128 + 4 * t)) why = "wait_group 0 + barrier did not land everything";
  }
  line("cp-async", why.empty() ? "ok" : "FAIL " + why);

  int* sum = dev<int>(1);
  int* orr = dev<int>(1);
  unsigned long long* best = dev<unsigned long long>(1);
  *sum = 0, *orr = 0, *best = 0;
  MD_LAUNCH(7, 64, 0, nullptr, k_atomics)(sum, best, orr);
  unsigned long long bmax = 0;
  for (int i = 0; i < 448; ++i) bmax = std::max<unsigned long long>(bmax, (unsigned long long)((i * 7919) % 1000));
  line("atomics", *sum == 448 * 447 / 2 && *best == bmax && *orr == 0x7fffffff ? "ok" : "FAIL atomics");
  cudaFree(out), cudaFree(d), cudaFree(g), cudaFree(o), cudaFree(sum), cudaFree(orr), cudaFree(best);
}

/**
 * D = C + A.B on one tile of values exact in the operand type, so every fp32 sum is exact: bf16 small
 * integers; for f16 integers plus multiples of 2^-8 / 2^-7 (up to 11 significant bits, more than bf16 holds), so decoding the halves
 * as bf16 would show.
 */
template <bool F16>
static std::string mma_case() {
  unsigned short* A = dev<unsigned short>(256);
  unsigned short* B = dev<unsigned short>(128);
  float* C = dev<float>(128);
  float* D = dev<float>(128);
  float a[256], b[128];
  const auto enc = [](float v) { return F16 ? __half_as_ushort(__float2half_rn(v)) : __bfloat16_as_ushort(__float2bfloat16_rn(v)); };
  for (int i = 0; i < 256; ++i) a[i] = (float)((i * 7) % 11 - 5) + (F16 ? (float)(i % 5) / 256.0f : 0.0f), A[i] = enc(a[i]);
  for (int i = 0; i < 128; ++i) b[i] = (float)((i * 5) % 9 - 4) + (F16 ? (float)(i % 3) / 128.0f : 0.0f), B[i] = enc(b[i]);
  for (int i = 0; i < 128; ++i) C[i] = (float)(i % 13);
  MD_LAUNCH(1, 32, 0, nullptr, k_mma<F16>)(A, B, C, D);
  std::string why = cudaGetLastError() == cudaSuccess ? "" : "launch failed";
  for (int m = 0; m < 16 && why.empty(); ++m)
    for (int n = 0; n < 8; ++n) {
      double want = C[m * 8 + n];
      for (int k = 0; k < 16; ++k) want += (double)a[m * 16 + k] * b[k * 8 + n];
      if ((double)D[m * 8 + n] != want) why = "D[" + std::to_string(m) + "][" + std::to_string(n) + "] = " + std::to_string(D[m * 8 + n]) + ", want " + std::to_string(want);
    }
  if (F16) expect_error("mma-half-warp", [&] { MD_LAUNCH(1, 16, 0, nullptr, k_mma<F16>)(A, B, C, D); });
  cudaFree(A), cudaFree(B), cudaFree(C), cudaFree(D);
  return why.empty() ? "ok" : "FAIL " + why;
}

static void check_mma() {
  line("mma-m16n8k16", mma_case<false>());
  line("mma-m16n8k16-f16", mma_case<true>());
}

static void check_errors() {
  int* out = dev<int>(1024);
  float* f = dev<float>(64);
  for (int i = 0; i < 64; ++i) f[i] = (float)i;
  MD_LAUNCH(1, 32, 0, nullptr, k_ldg)(f, f + 32, 0);
  line("ldg-aligned", cudaGetLastError() == cudaSuccess && f[32] == 0.0f ? "ok" : "FAIL an aligned __ldg failed");
  expect_error("ldg-misaligned", [&] { MD_LAUNCH(1, 32, 0, nullptr, k_ldg)(f, f + 32, 1); });
  expect_error("divergent-shuffle", [&] { MD_LAUNCH(1, 32, 0, nullptr, k_divergent_shfl)(out); });
  expect_error("barrier-in-branch", [&] { MD_LAUNCH(1, 128, 0, nullptr, k_barrier_in_branch)(out); });
  expect_error("two-barriers", [&] { MD_LAUNCH(1, 64, 0, nullptr, k_two_barriers)(out); });
  expect_error("barrier-after-exit", [&] { MD_LAUNCH(1, 128, 0, nullptr, k_barrier_after_exit)(out); });
  expect_error("mask-without-caller", [&] { MD_LAUNCH(1, 32, 0, nullptr, k_mask_without_caller)(out); });
  expect_error("mask-past-block", [&] { MD_LAUNCH(1, 40, 0, nullptr, k_mask_past_block)(out); });
  expect_error("exit-before-shuffle", [&] { MD_LAUNCH(1, 32, 0, nullptr, k_exit_before_shfl)(out); });
  expect_error("warp-vs-block", [&] { MD_LAUNCH(1, 64, 0, nullptr, k_warp_vs_block)(out); });
  expect_error("shuffle-outside-mask", [&] { MD_LAUNCH(1, 32, 0, nullptr, k_shfl_outside_mask)(out); });
  // After a refused kernel the context works again only once reset (tests); a failure is sticky until then.
  md_emu::reset_error();
  MD_LAUNCH(1, 32, 0, nullptr, k_divergent_shfl)(out);
  MD_LAUNCH(1, 32, 0, nullptr, k_shuffles)(out);
  const bool sticky = cudaGetLastError() == cudaErrorLaunchFailure && cudaMemset(out, 0, 4) == cudaErrorLaunchFailure;
  md_emu::reset_error();
  MD_LAUNCH(1, 32, 0, nullptr, k_rotate<true>)(out, out + 32);
  line("sticky-failure", sticky && cudaGetLastError() == cudaSuccess ? "ok" : "FAIL a failed launch is not sticky until reset");
  cudaFree(out);
  cudaFree(f);
}

static void convert() {
  char buf[64];
  while (fgets(buf, sizeof buf, stdin)) {
    const uint32_t u = (uint32_t)strtoul(buf, nullptr, 16);
    float x;
    memcpy(&x, &u, 4);
    printf("%04x %04x %08x %08x\n", __bfloat16_as_ushort(__float2bfloat16_rn(x)), __half_as_ushort(__float2half_rn(x)),
           bits(__bfloat162float(__ushort_as_bfloat16((unsigned short)u))), bits(__half2float(__ushort_as_half((unsigned short)u))));
  }
}

/** A stream queue like the runtime's emulated device's (md_abi.h md_emu_queue): runs work, or records it. */
struct ToyQueue {
  struct Op {
    void (*op)(void*);
    void* arg;
    void (*drop)(void*);
  };
  md_emu_queue q{};
  bool recording = false;
  std::vector<Op> ops;
  ToyQueue() {
    q.magic = MD_EMU_QUEUE_MAGIC;
    q.ctx = this;
    q.submit = [](void* c, void (*op)(void*), void* arg, void (*drop)(void*)) {
      ToyQueue& t = *static_cast<ToyQueue*>(c);
      if (t.recording) return t.ops.push_back({op, arg, drop});
      op(arg);
      drop(arg);
    };
    q.capturing = [](void* c) { return static_cast<ToyQueue*>(c)->recording ? 1 : 0; };
  }
  void replay() {
    for (Op& o : ops) o.op(o.arg);
  }
  ~ToyQueue() {
    for (Op& o : ops) o.drop(o.arg);
  }
};

/**
 * Stream capture through a queue: recorded work runs only when replayed, with the arguments it was
 * submitted with and the memory of the replay's time; a host wait on a capturing stream fails; a bad
 * launch configuration fails at the launch, recording nothing; a stream-ordered allocation made in a
 * capture is poisoned again at each replay; without capture the queue runs work at once.
 */
static void check_capture() {
  const int T = 64;
  int* in = dev<int>(T);
  int* out = dev<int>(T);
  std::string why;
  const auto bad = [&](const std::string& w) {  // keeps the first failure
    if (why.empty()) why = w;
  };
  {
    ToyQueue tq;
    tq.recording = true;
    for (int i = 0; i < T; ++i) in[i] = i;
    MD_LAUNCH(1, T, 0, &tq.q, k_rotate<true>)(in, out);
    if (cudaGetLastError() != cudaSuccess) bad("a recorded launch failed");
    if (out[0] != -1) bad("a recorded launch ran before its replay");
    if (cudaStreamSynchronize(&tq.q) != md_emu::CAPTURE_UNSUPPORTED) bad("a synchronisation of a capturing stream succeeded");
    md_emu::reset_error();
    MD_LAUNCH(1, 1025, 0, &tq.q, k_rotate<true>)(in, out);
    if (cudaGetLastError() != cudaErrorInvalidConfiguration) bad("a bad configuration did not fail its recorded launch");
    int* scratch = nullptr;
    if (cudaMallocAsync((void**)&scratch, 4 * sizeof(int), &tq.q) != cudaSuccess) bad("cudaMallocAsync failed in a capture");
    if (cudaMemsetAsync(scratch, 0, sizeof(int), &tq.q) != cudaSuccess || cudaFreeAsync(scratch, &tq.q) != cudaSuccess) bad("a recorded memset or free failed");
    tq.recording = false;
    if (tq.ops.size() != 4) bad("expected 4 recorded ops (launch, poison, memset, free), got " + std::to_string(tq.ops.size()));
    for (int rep = 0; rep < 2 && why.empty(); ++rep) {
      for (int i = 0; i < T; ++i) in[i] = 100 * rep + i;
      scratch[0] = scratch[1] = 7;
      tq.replay();
      for (int i = 0; i < T; ++i)
        if (out[i] != 100 * rep + (i + 1) % T) bad("replay " + std::to_string(rep) + " did not read the memory of its time");
      if (scratch[0] != 0 || scratch[1] != -1) bad("a capture's allocation was not poisoned again (then memset) at its replay");
    }
    MD_LAUNCH(1, T, 0, &tq.q, k_rotate<true>)(out, in);
    if (tq.ops.size() != 4 || in[0] != out[1]) bad("a queue that is not capturing did not run the launch at once");
  }
  line("stream-capture", why.empty() ? "ok" : "FAIL " + why);
}

/**
 * Run under MD_SIMT_EMU_HOST_WAITS: which runtime calls make the host wait. Prints `host-waits: ` and, for
 * each call, its name and `ok` or `refused` (cudaErrorStreamCaptureUnsupported, with the message).
 */
static void host_waits() {
  md_emu::set_abort_on_error(false);
  int* d = dev<int>(4);
  int h[4] = {1, 2, 3, 4};
  const std::pair<const char*, cudaError_t> calls[] = {
      {"StreamSynchronize", cudaStreamSynchronize(nullptr)},
      {"DeviceSynchronize", cudaDeviceSynchronize()},
      {"Memcpy", cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice)},
      {"MemcpyAsync-DtoH", cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, nullptr)},
      {"MemcpyAsync-HtoD", cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice, nullptr)},
      {"MemcpyAsync-DtoD", cudaMemcpyAsync(d + 2, d, 2 * sizeof(int), cudaMemcpyDeviceToDevice, nullptr)},
      {"MemsetAsync", cudaMemsetAsync(d, 0, sizeof h, nullptr)},
  };
  printf("host-waits:");
  for (const auto& c : calls)
    printf(" %s=%s", c.first, c.second == cudaSuccess ? "ok" : c.second == md_emu::CAPTURE_UNSUPPORTED ? "refused" : "error");
  printf("\n");
}

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "all";
  if (what == "convert") return convert(), 0;
  if (what == "host-waits") return host_waits(), 0;
  if (what == "abort-demo") {  // the default error mode: the message, then abort()
    int* out = dev<int>(32);
    MD_LAUNCH(1, 32, 0, nullptr, k_divergent_shfl)(out);
    return 0;
  }
  md_emu::set_abort_on_error(false);
  check_rotate();
  check_tree_sum();
  check_shuffles();
  check_block_collectives();
  check_indices();
  check_memory();
  check_mma();
  check_errors();
  check_capture();
  const md_emu::Emu& e = md_emu::emu();
  printf("stats: %llu launches, %llu blocks, %llu switches\n", (unsigned long long)e.launches, (unsigned long long)e.ctas,
         (unsigned long long)e.switches);
  return 0;
}
#endif
