// Device building blocks of every generated CUDA module: storage-dtype conversion, 16-byte vector loads,
// fixed-order warp reductions and the kernel skeletons, as templates over compile-time shapes. Generated
// sources instantiate them with the plan's constants and the pass functors rendered from the IR.
//
// Row invariance (docs/ARCHITECTURE.md, invariant 1) is built in, not hoped for: every f32 accumulation goes through
// explicit __fmaf_rn/__fadd_rn/__fmul_rn (nothing left for the compiler to contract or reorder); every
// reduction uses a lane partition and a shuffle tree fixed by compile-time shapes; and row tiles, grid
// sizes and chunk-to-CTA assignment (the only things that vary with rows or buckets) never change which
// operations a row's outputs go through.
//
// The same sources build as host C++ for the SIMT emulator (g++ -x c++ -DMD_SIMT_EMU; md_simt_emu.h,
// docs/ARCHITECTURE.md "The SIMT emulator"): the kernels' GPU-only constructs sit behind the few functions
// below that have an emulated twin (kernel launches, scratch memory, dynamic shared memory, cp.async,
// mma.sync), so the emulated build runs these very kernel bodies.
#pragma once
#ifdef MD_SIMT_EMU
#include "md_simt_emu.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <mutex>

#include "md_abi.h"
#include "md_argmax.h"
#include "md_expr.h"

#define MD_NEG_INF (-__int_as_float(0x7f800000))

/**
 * kernel<<<grid, block, smem, stream>>>(args...), written MD_LAUNCH(grid, block, smem, stream, kernel)(args...)
 * so that the emulated build can launch it too (a grid or block with commas goes in a dim3 variable first).
 */
#ifdef MD_SIMT_EMU
#define MD_LAUNCH(grid, block, smem, stream, ...) ::md_emu::launcher<__VA_ARGS__>((grid), (block), (smem), (stream))
#else
#define MD_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<(grid), (block), (smem), (stream)>>>
#endif

/** What a host launcher returns once its kernels are enqueued: MD_ERR_LAUNCH if any launch failed. */
static inline int md_launched(void) { return cudaGetLastError() == cudaSuccess ? MD_OK : MD_ERR_LAUNCH; }

/** The launch's dynamic shared memory (its `smem` bytes), 16-byte aligned. */
template <typename T>
__device__ __forceinline__ T* md_dynamic_smem() {
#ifdef MD_SIMT_EMU
  return reinterpret_cast<T*>(md_emu::dynamic_smem());
#else
  extern __shared__ __align__(16) unsigned char md_smem_dynamic[];
  return reinterpret_cast<T*>(md_smem_dynamic);
#endif
}

/**
 * 16 bytes global -> shared without a register round trip (cp.async.cg, sm_80+): both addresses 16-byte
 * aligned. The copy is complete only once md_cp_async_wait covers its commit group (and, for other
 * threads to read it, after a barrier); the emulator lands it exactly then.
 */
__device__ __forceinline__ void md_cp_async16(void* smem, const void* gmem) {
#ifdef MD_SIMT_EMU
  md_emu::cp_async(smem, gmem, 16);
#else
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
#endif
}
/** Closes the group of this thread's cp.async copies issued since the last commit. */
__device__ __forceinline__ void md_cp_async_commit() {
#ifdef MD_SIMT_EMU
  md_emu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
/** Waits until at most N of this thread's committed groups are still in flight. */
template <int N>
__device__ __forceinline__ void md_cp_async_wait() {
#ifdef MD_SIMT_EMU
  md_emu::cp_async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

/**
 * One warp's tensor-core tile D = A . B + C (mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, sm_80+):
 * A 16x16 and B 16x8 bf16, C and D 16x8 f32, in the PTX ISA's fragment layouts, with g = lane / 4 and
 * t = lane % 4 (element i of a lane; a register holds elements 2j in its low and 2j + 1 in its high half):
 *   a[0..3] (8 elements): row g + 8 * ((i / 2) % 2), column 2t + i % 2 + 8 * (i / 4);
 *   b[0..1] (4 elements): row (k) 2t + i % 2 + 8 * (i / 2), column (n) g;
 *   c, d (4 elements): row g + 8 * (i / 2), column 2t + i % 2.
 * Every lane of the warp calls it together. The emulator computes each output as an fp32 fma chain over k
 * from C (the tensor cores' accumulation order is their own: a GPU agrees to a few ulp, not bitwise).
 */
__device__ __forceinline__ void md_mma_16816_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
#ifdef MD_SIMT_EMU
  md_emu::mma_m16n8k16(d, a, b, c, false, __FILE__, __LINE__);
#else
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
               : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

/** md_mma_16816_bf16 with IEEE half operands (mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32): the same layouts. */
__device__ __forceinline__ void md_mma_16816_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
#ifdef MD_SIMT_EMU
  md_emu::mma_m16n8k16(d, a, b, c, true, __FILE__, __LINE__);
#else
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
               : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}
/** The m16n8k16 tile of a 16-bit storage type's operands. */
__device__ __forceinline__ void md_mma_16816(__nv_bfloat16, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  md_mma_16816_bf16(d, a, b, c);
}
__device__ __forceinline__ void md_mma_16816(__half, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  md_mma_16816_f16(d, a, b, c);
}

// ------------------------------------------------------------------------------------ storage dtypes

__device__ __forceinline__ float md_to_f32(float x) { return x; }
__device__ __forceinline__ float md_to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float md_to_f32(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T md_from_f32(float x);
template <> __device__ __forceinline__ float md_from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 md_from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half md_from_f32<__half>(float x) { return __float2half_rn(x); }

/** The machine word that moves B bytes in one load. */
template <int B> struct md_word;
template <> struct md_word<16> { typedef uint4 type; };
template <> struct md_word<8> { typedef uint2 type; };
template <> struct md_word<4> { typedef unsigned int type; };
template <> struct md_word<2> { typedef unsigned short type; };

/**
 * N consecutive elements of read-only data (weights, KV cache, activations of a finished kernel) as
 * floats, in loads of up to 16 bytes through the non-coherent path. `p` must be aligned to
 * min(16, N * sizeof(T)) bytes.
 */
template <typename T, int N>
__device__ __forceinline__ void md_load(const T* __restrict__ p, float (&out)[N]) {
  constexpr int BYTES = N * (int)sizeof(T) > 16 ? 16 : N * (int)sizeof(T);
  constexpr int PER = BYTES / (int)sizeof(T);
  static_assert(N % PER == 0, "vector width must divide the load");
  typedef typename md_word<BYTES>::type W;
#pragma unroll
  for (int w0 = 0; w0 < N; w0 += PER) {
    const W w = __ldg(reinterpret_cast<const W*>(p + w0));
    T v[PER];
    memcpy(v, &w, sizeof w);
#pragma unroll
    for (int i = 0; i < PER; ++i) out[w0 + i] = md_to_f32(v[i]);
  }
}

/** Sum over aligned groups of WIDTH lanes by a fixed xor butterfly; every lane of a group gets the same bits. */
template <int WIDTH>
__device__ __forceinline__ float md_group_sum(float v) {
#pragma unroll
  for (int o = WIDTH / 2; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/** Sum of a block's values: warp butterflies, then warp totals in warp order by thread 0 (result broadcast). */
template <int THREADS>
__device__ __forceinline__ float md_block_sum(float v, float* scratch /* THREADS / 32 + 1 floats */) {
  v = md_group_sum<32>(v);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = scratch[0];
#pragma unroll
    for (int w = 1; w < THREADS / 32; ++w) t = __fadd_rn(t, scratch[w]);
    scratch[THREADS / 32] = t;
  }
  __syncthreads();
  const float t = scratch[THREADS / 32];
  __syncthreads();  // scratch may be reused by the caller
  return t;
}

// ------------------------------------------------------------------------------------------ elementwise

/** x[r] = table[tokens[r]]; a token outside [0, VOCAB) writes zeros (codegen/abi.ts, embed). */
template <typename T, int HIDDEN, int VOCAB, int VEC>
__global__ void __launch_bounds__(128) md_embed_kernel(const T* __restrict__ table, const int32_t* __restrict__ tokens,
                                                       float* __restrict__ x) {
  const int r = blockIdx.x;
  const int32_t tok = tokens[r];
  float* xr = x + (size_t)r * HIDDEN;
  if (tok < 0 || tok >= VOCAB) {
    for (int i = threadIdx.x; i < HIDDEN; i += blockDim.x) xr[i] = 0.0f;
    return;
  }
  const T* row = table + (size_t)tok * HIDDEN;
  for (int c = threadIdx.x; c < HIDDEN / VEC; c += blockDim.x) {
    float v[VEC];
    md_load<T, VEC>(row + c * VEC, v);
#pragma unroll
    for (int i = 0; i < VEC; ++i) xr[c * VEC + i] = v[i];
  }
}

/**
 * y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, with x[r] = resid[r] + delta[r] written back when ADD.
 * Thread t owns the float4s t, t + THREADS, ...: its squares accumulate in that order, then md_block_sum.
 */
template <typename T, int HIDDEN, int THREADS, bool ADD>
__global__ void __launch_bounds__(THREADS) md_rmsnorm_kernel(float* __restrict__ resid, const float* __restrict__ delta,
                                                             const T* __restrict__ w, float* __restrict__ y, float eps) {
  static_assert(HIDDEN % 4 == 0, "hidden size must be a multiple of 4");
  __shared__ float scratch[THREADS / 32 + 1];
  const size_t base = (size_t)blockIdx.x * HIDDEN;
  float4* xr = reinterpret_cast<float4*>(resid + base);
  float ss = 0.0f;
  for (int c = threadIdx.x; c < HIDDEN / 4; c += THREADS) {
    float4 v = xr[c];
    if (ADD) {
      const float4 d = reinterpret_cast<const float4*>(delta + base)[c];
      v.x = __fadd_rn(v.x, d.x);
      v.y = __fadd_rn(v.y, d.y);
      v.z = __fadd_rn(v.z, d.z);
      v.w = __fadd_rn(v.w, d.w);
      xr[c] = v;
    }
    ss = __fmaf_rn(v.x, v.x, ss);
    ss = __fmaf_rn(v.y, v.y, ss);
    ss = __fmaf_rn(v.z, v.z, ss);
    ss = __fmaf_rn(v.w, v.w, ss);
  }
  ss = md_block_sum<THREADS>(ss, scratch);
  const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)HIDDEN), eps)));
  for (int c = threadIdx.x; c < HIDDEN / 4; c += THREADS) {
    const float4 v = xr[c];  // this thread's own values (written above when ADD)
    const float xs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) y[base + c * 4 + i] = __fmul_rn(__fmul_rn(xs[i], inv), md_to_f32(w[c * 4 + i]));
  }
}

/** resid += delta over `n` floats (grid-stride). */
static __global__ void md_add_kernel(float* __restrict__ resid, const float* __restrict__ delta, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    resid[i] = __fadd_rn(resid[i], delta[i]);
}

/** out = silu(gate) * up over `n` floats, silu(g) = g / (1 + exp(-g)). */
static __global__ void md_swiglu_kernel(const float* __restrict__ gate, const float* __restrict__ up, float* __restrict__ out, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float g = gate[i];
    out[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
  }
}

/**
 * Element index of KV head kvh's row at `offset` of physical page `page` in a layer's k_cache or v_cache:
 * pages are [KV_HEADS][PAGE][HEAD_DIM] (codegen/abi.ts, "Paged KV cache"), one head's rows contiguous.
 */
template <int KV_HEADS, int PAGE, int HEAD_DIM>
__device__ __forceinline__ size_t md_kv_row(int32_t page, int kvh, int offset) {
  return (((size_t)page * KV_HEADS + kvh) * PAGE + offset) * HEAD_DIM;
}

/**
 * Rotate-half RoPE of row blockIdx.x's q and k heads at its absolute position, then store k and v in the
 * paged cache. The angle is pos * inv_freq[i] in double (the table is float64), so large positions keep
 * full precision (Rope::inv_freq(i) is the plan's float64 table); rows with a position outside the cache
 * are rotated but not stored.
 */
template <typename T, int HEADS, int KV_HEADS, int HEAD_DIM, int PAGE, class Rope>
__global__ void __launch_bounds__(64) md_rope_append_kernel(float* __restrict__ q, float* __restrict__ k, const float* __restrict__ v,
                                                            T* __restrict__ k_cache, T* __restrict__ v_cache,
                                                            const int32_t* __restrict__ page_table, int32_t pages_per_seq,
                                                            const int32_t* __restrict__ row_seq, const int32_t* __restrict__ row_pos) {
  constexpr int HALF = HEAD_DIM / 2;
  const int r = blockIdx.x;
  const int32_t pos = row_pos[r];
  const int32_t slot = row_seq[r];
  const bool store = pos >= 0 && slot >= 0 && pos < pages_per_seq * PAGE;
  const int32_t page = store ? page_table[(size_t)slot * pages_per_seq + pos / PAGE] : -1;
  const int offset = pos % PAGE;
  float* qr = q + (size_t)r * HEADS * HEAD_DIM;
  float* kr = k + (size_t)r * KV_HEADS * HEAD_DIM;
  const float* vr = v + (size_t)r * KV_HEADS * HEAD_DIM;
  for (int i = threadIdx.x; i < HALF; i += blockDim.x) {
    double sd, cd;
    sincos((double)pos * Rope::inv_freq(i), &sd, &cd);
    const float s = (float)sd, c = (float)cd;
    for (int h = 0; h < HEADS + KV_HEADS; ++h) {
      float* x = h < HEADS ? qr + h * HEAD_DIM : kr + (h - HEADS) * HEAD_DIM;
      const float x1 = x[i], x2 = x[i + HALF];
      const float y1 = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
      const float y2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
      x[i] = y1;
      x[i + HALF] = y2;
      if (h >= HEADS && page >= 0) {
        T* kc = k_cache + md_kv_row<KV_HEADS, PAGE, HEAD_DIM>(page, h - HEADS, offset);
        kc[i] = md_from_f32<T>(y1);
        kc[i + HALF] = md_from_f32<T>(y2);
      }
    }
  }
  if (page >= 0)
    for (int i = threadIdx.x; i < KV_HEADS * HEAD_DIM; i += blockDim.x)
      v_cache[md_kv_row<KV_HEADS, PAGE, HEAD_DIM>(page, i / HEAD_DIM, offset) + i % HEAD_DIM] = md_from_f32<T>(vr[i]);
}

/** (value, index) order of argmax: NaN never wins, larger wins, the lower index wins ties. */
__device__ __forceinline__ bool md_argmax_better(float v, int i, float bv, int bi) {
  if (v != v) return false;
  return bi < 0 || v > bv || (v == bv && i < bi);
}

/** tokens[r] = argmax logits[r]; a row of NaNs gives 0. The order is total, so the combine tree is free. */
template <int VOCAB, int THREADS>
__global__ void __launch_bounds__(THREADS) md_argmax_kernel(const float* __restrict__ logits, int32_t* __restrict__ tokens) {
  __shared__ float sv[THREADS / 32];
  __shared__ int si[THREADS / 32];
  const float* row = logits + (size_t)blockIdx.x * VOCAB;
  float bv = 0.0f;
  int bi = -1;
  for (int i = threadIdx.x; i < VOCAB; i += THREADS) {
    const float v = row[i];
    if (md_argmax_better(v, i, bv, bi)) bv = v, bi = i;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (oi >= 0 && md_argmax_better(ov, oi, bv, bi)) bv = ov, bi = oi;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) sv[warp] = bv, si[warp] = bi;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < THREADS / 32; ++w)
      if (si[w] >= 0 && md_argmax_better(sv[w], si[w], bv, bi)) bv = sv[w], bi = si[w];
    tokens[blockIdx.x] = bi < 0 ? 0 : bi;
  }
}

template <int GAMMA>
__global__ void md_verify_greedy_kernel(const int32_t* __restrict__ target_tokens, const int32_t* __restrict__ draft_tokens,
                                        int32_t* __restrict__ accepted, int32_t* __restrict__ next, int batch) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  int a = 0;
  while (a < GAMMA && draft_tokens[(size_t)b * GAMMA + a] == target_tokens[(size_t)b * (GAMMA + 1) + a]) ++a;
  accepted[b] = a;
  next[b] = target_tokens[(size_t)b * (GAMMA + 1) + a];
}

// ------------------------------------------------------------------------------------------------ GEMM

/**
 * This lane's share of outputs (r0 + i, n0 + j), i < RT, j < COLS: lane l accumulates the VEC-wide K slices
 * l, l + 32, ... in order with fused multiply-adds; md_group_sum<32> of acc[i][j] is then the output, the
 * same bits on every lane. Rows past `rows` and columns past N are left at 0. Every kernel that produces a
 * projection output goes through here, so md_gemm and md_lm_head_argmax reduce each output identically.
 */
template <typename T, int N, int K, int VEC, int COLS, int RT>
__device__ __forceinline__ void md_gemm_partials(const float* __restrict__ x, const T* __restrict__ w, int n0, int r0, int rows, int lane,
                                                 float (&acc)[RT][COLS]) {
  static_assert(K % VEC == 0, "K must be a multiple of the vector width");
  constexpr int SLICES = K / VEC;
  constexpr int ITERS = (SLICES + 31) / 32;
#pragma unroll
  for (int i = 0; i < RT; ++i)
#pragma unroll
    for (int j = 0; j < COLS; ++j) acc[i][j] = 0.0f;
#pragma unroll 1
  for (int it = 0; it < ITERS; ++it) {
    const int s = it * 32 + lane;
    if (SLICES % 32 != 0 && s >= SLICES) break;
    float wv[COLS][VEC];
#pragma unroll
    for (int j = 0; j < COLS; ++j) {
      if (N % COLS == 0 || n0 + j < N) {
        md_load<T, VEC>(w + (size_t)(n0 + j) * K + (size_t)s * VEC, wv[j]);
      } else {
#pragma unroll
        for (int e = 0; e < VEC; ++e) wv[j][e] = 0.0f;
      }
    }
#pragma unroll
    for (int i = 0; i < RT; ++i) {
      if (r0 + i < rows) {
        float xv[VEC];
        md_load<float, VEC>(x + (size_t)(r0 + i) * K + (size_t)s * VEC, xv);
#pragma unroll
        for (int j = 0; j < COLS; ++j)
#pragma unroll
          for (int e = 0; e < VEC; ++e) acc[i][j] = __fmaf_rn(xv[e], wv[j][e], acc[i][j]);
      }
    }
  }
}

/**
 * y[r, n] = sum_k x[r, k] * w[n, k] (+ bias[n] when bias is not NULL: any projection takes one or none, as
 * on the CPU; the test is uniform over the grid). A CTA owns WARPS * COLS consecutive columns for every
 * row of the call, so each weight is fetched from memory once per call: a warp streams its COLS weight
 * rows once per tile of RT rows (later tiles hit the cache). Output (r, n) always reduces the same way
 * (md_gemm_partials, then a fixed 32-lane butterfly); RT (chosen per bucket) only decides how many rows
 * share one pass over the weights.
 */
template <typename T, int N, int K, int VEC, int WARPS, int COLS, int RT>
__global__ void __launch_bounds__(WARPS * 32, 4) md_gemm_kernel(const float* __restrict__ x, const T* __restrict__ w,
                                                             const T* __restrict__ bias, float* __restrict__ y, int rows) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n0 = (blockIdx.x * WARPS + warp) * COLS;
  if (n0 >= N) return;  // whole warp leaves together
  for (int r0 = 0; r0 < rows; r0 += RT) {
    float acc[RT][COLS];
    md_gemm_partials<T, N, K, VEC, COLS, RT>(x, w, n0, r0, rows, lane, acc);
#pragma unroll
    for (int i = 0; i < RT; ++i)
#pragma unroll
      for (int j = 0; j < COLS; ++j) {
        const float t = md_group_sum<32>(acc[i][j]);
        if (lane == j && r0 + i < rows && (N % COLS == 0 || n0 + j < N))
          y[(size_t)(r0 + i) * N + n0 + j] = bias ? __fadd_rn(t, md_to_f32(bias[n0 + j])) : t;
      }
  }
}

// ------------------------------------------------------------------------------------ LM head + argmax

/**
 * md_gemm_kernel's projection without bias (the same md_gemm_partials and butterfly per output, so logits
 * are bit-identical to md_gemm_lm_head's; stored only when `logits` is not NULL), and per row the best
 * md_argmax_key (md_argmax.h) over the CTA's columns, merged into best[r] with atomicMax: the key's order
 * is total, so any order of the atomics gives one key. Warps past N stay for the CTA's barriers.
 */
template <typename T, int N, int K, int VEC, int WARPS, int COLS, int RT>
__global__ void __launch_bounds__(WARPS * 32, 4) md_lm_head_argmax_kernel(const float* __restrict__ x, const T* __restrict__ w,
                                                                       float* __restrict__ logits, unsigned long long* __restrict__ best,
                                                                       int rows) {
  __shared__ unsigned long long warp_best[RT][WARPS];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n0 = (blockIdx.x * WARPS + warp) * COLS;
  const bool live = n0 < N;  // uniform over the warp
  for (int r0 = 0; r0 < rows; r0 += RT) {
    float acc[RT][COLS];
    if (live) md_gemm_partials<T, N, K, VEC, COLS, RT>(x, w, n0, r0, rows, lane, acc);
#pragma unroll
    for (int i = 0; i < RT; ++i) {
      unsigned long long key = 0ull;
      if (live) {
#pragma unroll
        for (int j = 0; j < COLS; ++j) {
          const float t = md_group_sum<32>(acc[i][j]);
          if (r0 + i < rows && (N % COLS == 0 || n0 + j < N)) {
            if (logits && lane == j) logits[(size_t)(r0 + i) * N + n0 + j] = t;
            const unsigned long long k = md_argmax_key(t, n0 + j);
            key = k > key ? k : key;
          }
        }
      }
      if (lane == 0) warp_best[i][warp] = key;
    }
    __syncthreads();
    if (threadIdx.x < RT && r0 + (int)threadIdx.x < rows) {
      unsigned long long k = warp_best[threadIdx.x][0];
#pragma unroll
      for (int v = 1; v < WARPS; ++v) k = warp_best[threadIdx.x][v] > k ? warp_best[threadIdx.x][v] : k;
      if (k) atomicMax(best + r0 + threadIdx.x, k);
    }
    __syncthreads();  // warp_best is rewritten by the next row tile
  }
}

/** tokens[r] = the index of best[r]; 0 for a row with no candidate (all NaN), as md_argmax. */
static __global__ void md_argmax_key_tokens_kernel(const unsigned long long* __restrict__ best, int32_t* __restrict__ tokens, int rows) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < rows) tokens[r] = md_argmax_key_index(best[r]);
}

/**
 * Stream-ordered device scratch from a module-private pool per device that keeps its memory (release
 * threshold: never), so a launcher's per-call scratch is a free-list hit after the first call, and calls on
 * different streams never share a buffer. Freed with cudaFreeAsync on the same stream. The pools live as
 * long as the process (modules are never unmapped: see runtime/src/module.cpp).
 */
static inline int md_scratch_alloc(void** p, size_t bytes, cudaStream_t s) {
#ifdef MD_SIMT_EMU
  return cudaMallocAsync(p, bytes, s) == cudaSuccess ? MD_OK : MD_ERR_LAUNCH;  // poisoned host memory
#else
  constexpr int MAX_DEVICES = 64;
  static std::mutex lock;
  static cudaMemPool_t pools[MAX_DEVICES] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= MAX_DEVICES) return MD_ERR_LAUNCH;
  cudaMemPool_t pool;
  {
    std::lock_guard<std::mutex> guard(lock);
    if (!pools[dev]) {
      cudaMemPoolProps props;
      memset(&props, 0, sizeof props);
      props.allocType = cudaMemAllocationTypePinned;
      props.location.type = cudaMemLocationTypeDevice;
      props.location.id = dev;
      cudaMemPool_t created;
      if (cudaMemPoolCreate(&created, &props) != cudaSuccess) return MD_ERR_LAUNCH;
      uint64_t keep = UINT64_MAX;
      if (cudaMemPoolSetAttribute(created, cudaMemPoolAttrReleaseThreshold, &keep) != cudaSuccess) {
        cudaMemPoolDestroy(created);
        return MD_ERR_LAUNCH;
      }
      pools[dev] = created;
    }
    pool = pools[dev];
  }
  return cudaMallocFromPoolAsync(p, bytes, pool, s) == cudaSuccess ? MD_OK : MD_ERR_LAUNCH;
#endif
}

/** Host side of md_lm_head_argmax_b<B>: scratch keys zeroed, the fused kernel, keys to tokens, scratch freed. */
template <typename T, int N, int K, int VEC, int WARPS, int COLS, int RT>
static int md_lm_head_argmax_launch(const float* x, const T* w, float* logits, int32_t* tokens, int rows, cudaStream_t s) {
  constexpr int CTAS = (N + WARPS * COLS - 1) / (WARPS * COLS);
  unsigned long long* best = nullptr;
  if (md_scratch_alloc((void**)&best, (size_t)rows * sizeof *best, s) != MD_OK) return MD_ERR_LAUNCH;
  int status = cudaMemsetAsync(best, 0, (size_t)rows * sizeof *best, s) == cudaSuccess ? MD_OK : MD_ERR_LAUNCH;
  if (status == MD_OK) {
    MD_LAUNCH(CTAS, WARPS * 32, 0, s, md_lm_head_argmax_kernel<T, N, K, VEC, WARPS, COLS, RT>)(x, w, logits, best, rows);
    MD_LAUNCH((rows + 127) / 128, 128, 0, s, md_argmax_key_tokens_kernel)(best, tokens, rows);
    status = md_launched();
  }
  if (cudaFreeAsync(best, s) != cudaSuccess) status = MD_ERR_LAUNCH;
  return status;
}

// ------------------------------------------------------------------------------------------- attention

/**
 * Compile-time shape of one pass's attention. A CTA of 128 threads handles one (row, KV head) and the
 * GROUP query heads that share it, for chunks blockIdx.x, blockIdx.x + gridDim.x, ... of that row.
 *  - Scores: a position's dot product runs on LPP lanes, each over VPL vectors of VEC dims in order, then
 *    an LPP-lane butterfly; 32 / LPP positions per warp at a time.
 *  - P.V: thread items (head, VEC_V dims, position class s mod SPLIT); a class sums its positions in
 *    ascending order, classes combine in ascending s, and the tile joins the running state per head.
 * All of it is fixed by these constants, so the split of chunks over CTAs cannot change a row's bits.
 */
template <int HEADS_, int KV_HEADS_, int HEAD_DIM_, int PAGE_, int CHUNK_PAGES_, int MAX_CHUNKS_, int VEC_, int LPP_, int VEC_V_, int SPLIT_>
struct md_attn_shape {
  static constexpr int HEADS = HEADS_, KV_HEADS = KV_HEADS_, HEAD_DIM = HEAD_DIM_, GROUP = HEADS_ / KV_HEADS_;
  static constexpr int PAGE = PAGE_, CHUNK_PAGES = CHUNK_PAGES_, CHUNK = PAGE_ * CHUNK_PAGES_, MAX_CHUNKS = MAX_CHUNKS_;
  static constexpr int VEC = VEC_, LPP = LPP_, VPL = HEAD_DIM_ / (VEC_ * LPP_), PPW = 32 / LPP_;
  static constexpr int VEC_V = VEC_V_, SPLIT = SPLIT_, ITEMS = GROUP * HEAD_DIM_ / VEC_V_;
  static constexpr int THREADS = 128;
  /** Floats of workspace per (row, query head, chunk): m, l, acc[HEAD_DIM]. */
  static constexpr int PARTIAL = HEAD_DIM_ + 2;
  static_assert(HEAD_DIM_ % (VEC_ * LPP_) == 0 && 32 % LPP_ == 0, "bad score lane partition");
  static_assert(HEAD_DIM_ % VEC_V_ == 0, "bad P.V vector width");
};

/**
 * Whether chunk c of a row at qpos over `len` positions may hold a visible position (Pass::tile_may on the
 * chunk's range): the chunk kernel computes a partial exactly for these, the merge reads exactly these.
 */
template <class S, class Pass>
__device__ __forceinline__ bool md_attn_chunk_kept(int c, int32_t qpos, int32_t len, const float* params) {
  const int32_t c0 = c * S::CHUNK, c1 = min(c0 + S::CHUNK, len) - 1;
  return Pass::tile_may(qpos, c0, c1, params);
}

/**
 * The chunk partials of one (row, KV head): of the row's kept chunks (md_attn_chunk_kept) in ascending
 * order, the ones numbered blockIdx.x, blockIdx.x + gridDim.x, ..., so the draft's CTAs spread over the
 * chunks its policy keeps and a skipped chunk costs neither a CTA nor a partial. A Pass provides the
 * static device functions visible / tile_must / tile_may / score (rendered from the pass's IR) and SCALE
 * (1 / sqrt(head_dim)); see codegen/backends/common.ts renderPassStruct.
 */
template <typename T, class S, class Pass>
__global__ void __launch_bounds__(128, 4) md_attn_chunk_kernel(md_attn_args a) {
  constexpr int D = S::HEAD_DIM, G = S::GROUP, P = S::PAGE;
  __shared__ __align__(16) float qs[G * D];
  __shared__ float sc[G * P];           // scores, then probabilities, of the current tile
  __shared__ bool vis[P];               // position visible (only read for partial tiles)
  __shared__ float part[S::SPLIT * G * D];
  __shared__ __align__(16) float acc[G * D];
  __shared__ float st_m[G], st_l[G], st_alpha[G], st_mnew[G];

  const int r = blockIdx.z, kvh = blockIdx.y, tid = threadIdx.x;
  const int warp = tid >> 5, lane = tid & 31;
  const int32_t slot = a.row_seq[r], qpos = a.row_pos[r];
  const float* params = a.params;
  int32_t len = slot >= 0 ? a.seq_len[slot] : 0;
  len = min(len, min(a.pages_per_seq * P, S::MAX_CHUNKS * S::CHUNK));
  const int nchunks = len > 0 ? (len + S::CHUNK - 1) / S::CHUNK : 0;
  int first = 0;  // this CTA's first chunk: kept chunk number blockIdx.x
  for (int kept = 0; first < nchunks; ++first)
    if (md_attn_chunk_kept<S, Pass>(first, qpos, len, params) && kept++ == (int)blockIdx.x) break;
  if (first >= nchunks) return;

  for (int i = tid; i < G * D; i += S::THREADS) qs[i] = a.q[((size_t)r * S::HEADS + kvh * G) * D + i];
  const T* kc = static_cast<const T*>(a.k_cache);
  const T* vc = static_cast<const T*>(a.v_cache);
  const int32_t* pages = a.page_table + (size_t)slot * a.pages_per_seq;

  for (int c = first; c < nchunks;) {
    const int32_t c0 = c * S::CHUNK, c1 = min(c0 + S::CHUNK, len) - 1;
    __syncthreads();  // qs loaded / previous chunk's state consumed
    if (tid < G) st_m[tid] = MD_NEG_INF, st_l[tid] = 0.0f;
    for (int i = tid; i < G * D; i += S::THREADS) acc[i] = 0.0f;
    for (int tile = 0; tile < S::CHUNK_PAGES; ++tile) {
      const int32_t p0 = c0 + tile * P;
      if (p0 > c1) break;
      const int32_t p1 = min(p0 + P - 1, c1);
      if (!Pass::tile_may(qpos, p0, p1, params)) continue;  // never loaded: the draft's traffic is its budget
      const bool full = Pass::tile_must(qpos, p0, p1, params);
      const int n = p1 - p0 + 1;
      const T* k_tile = kc + md_kv_row<S::KV_HEADS, P, D>(pages[p0 / P], kvh, 0);  // this head's rows of the page
      const T* v_tile = vc + md_kv_row<S::KV_HEADS, P, D>(pages[p0 / P], kvh, 0);
      __syncthreads();  // previous tile's sc/vis/part consumed

      // Scores of every visible position, s = (q . k) * scale, then the pass's score function.
      for (int j0 = 0; j0 < n; j0 += 4 * S::PPW) {
        const int j = j0 + warp * S::PPW + lane / S::LPP;
        const int sub = lane % S::LPP;
        const bool live = j < n && (full || Pass::visible(qpos, p0 + j, params));
        float dot[G];
#pragma unroll
        for (int g = 0; g < G; ++g) dot[g] = 0.0f;
        if (live) {
          const T* kr = k_tile + (size_t)j * D;
#pragma unroll
          for (int v = 0; v < S::VPL; ++v) {
            const int d0 = (v * S::LPP + sub) * S::VEC;
            float kv[S::VEC];
            md_load<T, S::VEC>(kr + d0, kv);
#pragma unroll
            for (int g = 0; g < G; ++g)
#pragma unroll
              for (int e = 0; e < S::VEC; ++e) dot[g] = __fmaf_rn(qs[g * D + d0 + e], kv[e], dot[g]);
          }
        }
#pragma unroll
        for (int g = 0; g < G; ++g) dot[g] = md_group_sum<S::LPP>(dot[g]);
        if (j < n && sub == 0) {
          vis[j] = live;
#pragma unroll
          for (int g = 0; g < G; ++g) sc[g * P + j] = live ? Pass::score(__fmul_rn(dot[g], Pass::SCALE), qpos, p0 + j, kvh * G + g, params) : 0.0f;
        }
      }
      __syncthreads();

      // Per head: the tile's max over visible positions joins the running max.
      if (tid < G) {
        float mt = MD_NEG_INF;
        for (int j = 0; j < n; ++j)
          if (vis[j]) mt = fmaxf(mt, sc[tid * P + j]);
        const float m_old = st_m[tid];
        const float m_new = fmaxf(m_old, mt);
        st_mnew[tid] = m_new;
        st_alpha[tid] = m_old == MD_NEG_INF ? 0.0f : expf(__fsub_rn(m_old, m_new));
      }
      __syncthreads();
      for (int i = tid; i < G * P; i += S::THREADS) {
        const int g = i / P, j = i % P;
        const float s = sc[i];
        sc[i] = (j < n && vis[j] && s != MD_NEG_INF) ? expf(__fsub_rn(s, st_mnew[g])) : 0.0f;
      }
      __syncthreads();

      // l in ascending position order; P.V by position classes.
      if (tid < G) {
        float l = __fmul_rn(st_l[tid], st_alpha[tid]);
        for (int j = 0; j < n; ++j)
          if (vis[j]) l = __fadd_rn(l, sc[tid * P + j]);
        st_l[tid] = l;
        st_m[tid] = st_mnew[tid];
      }
      for (int it = tid; it < S::ITEMS * S::SPLIT; it += S::THREADS) {
        const int item = it % S::ITEMS, cls = it / S::ITEMS;
        const int g = item / (D / S::VEC_V), d0 = (item % (D / S::VEC_V)) * S::VEC_V;
        float pv[S::VEC_V];
#pragma unroll
        for (int e = 0; e < S::VEC_V; ++e) pv[e] = 0.0f;
        for (int j = cls; j < n; j += S::SPLIT) {
          if (!vis[j]) continue;
          const float p = sc[g * P + j];
          float vv[S::VEC_V];
          md_load<T, S::VEC_V>(v_tile + (size_t)j * D + d0, vv);
#pragma unroll
          for (int e = 0; e < S::VEC_V; ++e) pv[e] = __fmaf_rn(p, vv[e], pv[e]);
        }
#pragma unroll
        for (int e = 0; e < S::VEC_V; ++e) part[(cls * G + g) * D + d0 + e] = pv[e];
      }
      __syncthreads();
      for (int i = tid; i < G * D; i += S::THREADS) {
        float t = part[i];
#pragma unroll
        for (int cls = 1; cls < S::SPLIT; ++cls) t = __fadd_rn(t, part[cls * G * D + i]);
        acc[i] = __fadd_rn(__fmul_rn(acc[i], st_alpha[i / D]), t);
      }
    }
    __syncthreads();
    // Partial of (row, head, chunk): m, l, acc; a kept chunk with nothing visible is m = -inf, l = 0.
    for (int i = tid; i < G * S::PARTIAL; i += S::THREADS) {
      const int g = i / S::PARTIAL, e = i % S::PARTIAL;
      float* ws = a.workspace + (((size_t)r * S::HEADS + kvh * G + g) * S::MAX_CHUNKS + c) * S::PARTIAL;
      ws[e] = e == 0 ? st_m[g] : e == 1 ? st_l[g] : acc[g * D + e - 2];
    }
    // The next chunk of this CTA: gridDim.x kept chunks further on.
    for (int step = 0; step < (int)gridDim.x && ++c < nchunks;)
      if (md_attn_chunk_kept<S, Pass>(c, qpos, len, params)) ++step;
  }
}

/**
 * out[r, h] from the chunk partials in ascending chunk order, skipping empty chunks (see codegen/abi.ts):
 * only kept chunks have a partial (md_attn_chunk_kept); a kept one may still be empty (m = -inf).
 */
template <class S, class Pass>
__global__ void __launch_bounds__(S::HEAD_DIM) md_attn_merge_kernel(md_attn_args a) {
  constexpr int D = S::HEAD_DIM;
  __shared__ float wgt[S::MAX_CHUNKS];
  __shared__ float total;
  const int r = blockIdx.y, h = blockIdx.x, d = threadIdx.x;
  const int32_t slot = a.row_seq[r], qpos = a.row_pos[r];
  int32_t len = slot >= 0 ? a.seq_len[slot] : 0;
  len = min(len, min(a.pages_per_seq * S::PAGE, S::MAX_CHUNKS * S::CHUNK));
  const int nchunks = len > 0 ? (len + S::CHUNK - 1) / S::CHUNK : 0;
  const float* ws = a.workspace + ((size_t)r * S::HEADS + h) * S::MAX_CHUNKS * S::PARTIAL;
  __shared__ bool kept[S::MAX_CHUNKS];
  for (int c = d; c < nchunks; c += S::HEAD_DIM) kept[c] = md_attn_chunk_kept<S, Pass>(c, qpos, len, a.params);
  __syncthreads();
  if (d == 0) {
    float m = MD_NEG_INF;
    for (int c = 0; c < nchunks; ++c)
      if (kept[c]) m = fmaxf(m, ws[c * S::PARTIAL]);
    float l = 0.0f;
    for (int c = 0; c < nchunks; ++c) {
      if (!kept[c]) continue;
      const float mc = ws[c * S::PARTIAL];
      wgt[c] = mc == MD_NEG_INF ? 0.0f : expf(__fsub_rn(mc, m));
      if (mc != MD_NEG_INF) l = __fadd_rn(l, __fmul_rn(ws[c * S::PARTIAL + 1], wgt[c]));
    }
    total = l;
  }
  __syncthreads();
  float o = 0.0f;
  for (int c = 0; c < nchunks; ++c)
    if (kept[c] && ws[c * S::PARTIAL] != MD_NEG_INF) o = __fadd_rn(o, __fmul_rn(ws[c * S::PARTIAL + 2 + d], wgt[c]));
  a.out[((size_t)r * S::HEADS + h) * D + d] = total > 0.0f ? __fdiv_rn(o, total) : 0.0f;
}

/**
 * Host side of a pass's attention (md_attn_<pass>_b<B>), after the entry point's checks of the host
 * values (the CPU's): launches the chunk kernel with enough chunk slots per (row, KV head) for about
 * TARGET_CTAS CTAs (never more than MAX_CHUNKS) and the merge. Slots, positions and lengths are in device
 * memory: the kernels clamp instead of refusing (codegen/abi.ts, attn). How many CTAs split a row's
 * chunks changes nothing of its bits (md_attn_shape).
 */
template <typename T, class S, class Pass, int TARGET_CTAS>
static int md_attn_launch(const md_attn_args* args) {
  const md_attn_args a = *args;
  const long long pairs = (long long)a.rows * S::KV_HEADS;
  const long long slots = (TARGET_CTAS + pairs - 1) / pairs;
  const unsigned chunk_slots = (unsigned)(slots < 1 ? 1 : slots > S::MAX_CHUNKS ? S::MAX_CHUNKS : slots);
  cudaStream_t s = (cudaStream_t)a.stream;
  const dim3 chunk_grid(chunk_slots, S::KV_HEADS, a.rows), merge_grid(S::HEADS, a.rows);
  MD_LAUNCH(chunk_grid, S::THREADS, 0, s, md_attn_chunk_kernel<T, S, Pass>)(a);
  MD_LAUNCH(merge_grid, S::HEAD_DIM, 0, s, md_attn_merge_kernel<S, Pass>)(a);
  return md_launched();
}
