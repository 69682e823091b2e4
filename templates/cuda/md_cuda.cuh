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
 * Staged-row padding: rows of whole 16-byte vectors get a stride of 16 * LANES bytes mod 128, so that the 8
 * lanes of a shared-memory phase (the first vectors of 32 / LANES positions in the CUDA-core kernel; a K or
 * V fragment's rows on tensor cores, LANES = 1) hit distinct banks; rows of another width stay packed and
 * copy as a whole.
 */
constexpr int md_attn_pad_bytes(int row_bytes, int lanes) { return row_bytes % 16 == 0 ? (16 * lanes - row_bytes % 128 + 256) % 128 : 0; }

/**
 * What both attention kernels' shapes share: heads and their grouping, the paging and chunks, the block
 * of ROWS rows (PAIRS pairs), the partials' layout, and the staged K/V tiles (PAGE rows of ROW_STRIDE
 * elements, PAD_BYTES_ of padding each, two stages of K and V).
 */
template <typename T, int HEADS_, int KV_HEADS_, int HEAD_DIM_, int PAGE_, int CHUNK_PAGES_, int MAX_CHUNKS_, int ROWS_, int PAD_BYTES_>
struct md_attn_geometry {
  static constexpr int HEADS = HEADS_, KV_HEADS = KV_HEADS_, HEAD_DIM = HEAD_DIM_, GROUP = HEADS_ / KV_HEADS_;
  static constexpr int PAGE = PAGE_, CHUNK_PAGES = CHUNK_PAGES_, CHUNK = PAGE_ * CHUNK_PAGES_, MAX_CHUNKS = MAX_CHUNKS_;
  static constexpr int ROWS = ROWS_, PAIRS = ROWS_ * GROUP;
  static constexpr int THREADS = 128;
  /** Floats of workspace per (row, query head, chunk): m, l, acc[HEAD_DIM]. */
  static constexpr int PARTIAL = HEAD_DIM_ + 2;
  static constexpr int ROW_BYTES = HEAD_DIM_ * (int)sizeof(T);
  static constexpr bool ROW16 = ROW_BYTES % 16 == 0, TILE16 = PAGE_ * ROW_BYTES % 16 == 0;
  static constexpr int PAD_BYTES = PAD_BYTES_;
  static constexpr int ROW_STRIDE = (ROW_BYTES + PAD_BYTES) / (int)sizeof(T);
  static constexpr int TILE_ELTS = PAGE_ * ROW_STRIDE;
  static constexpr int STAGE_BYTES = 4 * ((TILE_ELTS * (int)sizeof(T) + 15) / 16 * 16);  // K and V, two stages
};

/**
 * Compile-time shape of one pass's attention (FlashDecoding-style split-KV). A CTA of 128 threads takes a
 * block of up to ROWS consecutive rows of one sequence (the gamma + 1 rows of a verification, or rows of a
 * prefill chunk) and one KV head: its ROWS x GROUP (row, query head) pairs share every K/V tile, which the
 * CTA stages in shared memory once (cp.async, double-buffered), for chunks blockIdx.x, blockIdx.x +
 * gridDim.x, ... of those the block's rows keep.
 *  - Scores: a position's dot product runs on LPP lanes, each over VPL vectors of VEC dims in order, then
 *    an LPP-lane butterfly; 32 / LPP positions per warp at a time.
 *  - Softmax: a warp per pair; the tile's maximum by a butterfly, its weights' sum as each lane's ascending
 *    positions (lane, lane + 32, ...) and then a 32-lane butterfly.
 *  - P.V: work units (VEC_V dims, position class s mod SPLIT); a class sums its positions in ascending
 *    order, classes combine in ascending s, and the tile joins the running state of each pair.
 * Each pair's arithmetic is fixed by these constants and by its own row's position alone (which tiles and
 * chunks its row may see), never by which other rows share its block or how chunks spread over CTAs.
 */
template <typename T, int HEADS_, int KV_HEADS_, int HEAD_DIM_, int PAGE_, int CHUNK_PAGES_, int MAX_CHUNKS_, int VEC_, int LPP_, int VEC_V_,
          int SPLIT_, int ROWS_>
struct md_attn_shape
    : md_attn_geometry<T, HEADS_, KV_HEADS_, HEAD_DIM_, PAGE_, CHUNK_PAGES_, MAX_CHUNKS_, ROWS_, md_attn_pad_bytes(HEAD_DIM_ * (int)sizeof(T), LPP_)> {
  typedef typename md_attn_shape::md_attn_geometry G;  // the base, by its injected name
  static constexpr bool MMA = false;
  static constexpr int VEC = VEC_, LPP = LPP_, VPL = HEAD_DIM_ / (VEC_ * LPP_), PPW = 32 / LPP_;
  static constexpr int VEC_V = VEC_V_, SPLIT = SPLIT_, DV = HEAD_DIM_ / VEC_V_, UNITS = DV * SPLIT_;
  /** P.V: pair groups (a thread works one unit for pairs pg, pg + PG, ...), and pairs per thread. */
  static constexpr int PG = G::THREADS / UNITS, PPT = (G::PAIRS + PG - 1) / PG;
  /** Score rows padded by one float: P.V's threads of different pairs read one position's weights in distinct banks. */
  static constexpr int SC_STRIDE = PAGE_ + 1;
  /** Dynamic shared memory: stages, then q, scores, accumulators, class partials, pair state, visibility. */
  static constexpr int SMEM_FLOATS = G::PAIRS * HEAD_DIM_ * 2 + G::PAIRS * SC_STRIDE + (SPLIT_ - 1) * G::PAIRS * HEAD_DIM_ + 3 * G::PAIRS;
  static constexpr int SMEM_BYTES = G::STAGE_BYTES + 4 * SMEM_FLOATS + ROWS_ * PAGE_;
  static_assert(HEAD_DIM_ % (VEC_ * LPP_) == 0 && 32 % LPP_ == 0, "bad score lane partition");
  static_assert(HEAD_DIM_ % VEC_V_ == 0 && UNITS <= G::THREADS, "bad P.V partition");
};

/** max over aligned groups of WIDTH lanes by an xor butterfly (exact, so any order gives the same bits). */
template <int WIDTH>
__device__ __forceinline__ float md_group_max(float v) {
#pragma unroll
  for (int o = WIDTH / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/** N elements at p in shared memory (N * sizeof(T) bytes aligned to the load), widened to f32. */
template <typename T, int N>
__device__ __forceinline__ void md_load_shared(const T* p, float (&out)[N]) {
  constexpr int BYTES = N * (int)sizeof(T) > 16 ? 16 : N * (int)sizeof(T);
  constexpr int PER = BYTES / (int)sizeof(T);
  typedef typename md_word<BYTES>::type W;
#pragma unroll
  for (int w0 = 0; w0 < N; w0 += PER) {
    const W w = *reinterpret_cast<const W*>(p + w0);
    T v[PER];
    memcpy(v, &w, sizeof w);
#pragma unroll
    for (int i = 0; i < PER; ++i) out[w0 + i] = md_to_f32(v[i]);
  }
}

/**
 * Whether chunk c of a row at qpos over `len` positions may hold a visible position (Pass::tile_may on the
 * chunk's range): exactly these chunks get the row's partial, and the merge reads exactly these.
 */
template <class S, class Pass>
__device__ __forceinline__ bool md_attn_chunk_kept(int c, int32_t qpos, int32_t len, const float* params) {
  const int32_t c0 = c * S::CHUNK, c1 = min(c0 + S::CHUNK, len) - 1;
  return Pass::tile_may(qpos, c0, c1, params);
}

/**
 * The rows of one CTA's block and what of the KV they may see. Every thread holds the same copy, so the
 * walk over chunks and tiles below is uniform across the CTA.
 */
template <class S, class Pass>
struct md_attn_block {
  int nb;                  // rows in the block
  const int32_t* qpos;     // their positions (shared memory)
  int32_t len;             // their sequence's length (clamped)
  int nchunks;
  const float* params;

  __device__ __forceinline__ bool row_chunk(int i, int c) const { return i < nb && md_attn_chunk_kept<S, Pass>(c, qpos[i], len, params); }
  __device__ __forceinline__ bool chunk(int c) const {
    bool any = false;
#pragma unroll
    for (int i = 0; i < S::ROWS; ++i) any = any || row_chunk(i, c);
    return any;
  }
  /** Whether row i classifies tile t of chunk c as possibly visible (its chunk kept for it too). */
  __device__ __forceinline__ bool row_tile(int i, int c, int t) const {
    const int32_t p0 = c * S::CHUNK + t * S::PAGE, p1 = min(p0 + S::PAGE, min((c + 1) * S::CHUNK, len)) - 1;
    return p0 < len && row_chunk(i, c) && Pass::tile_may(qpos[i], p0, p1, params);
  }
  /** The first tile at or after t of chunk c that some row may see, or CHUNK_PAGES. */
  __device__ __forceinline__ int tile_from(int c, int t) const {
    for (; t < S::CHUNK_PAGES && c * S::CHUNK + t * S::PAGE < len; ++t) {
      bool any = false;
#pragma unroll
      for (int i = 0; i < S::ROWS; ++i) any = any || row_tile(i, c, t);
      if (any) return t;
    }
    return S::CHUNK_PAGES;
  }
  /** This CTA's chunk after c: gridDim.x kept chunks further on, or nchunks. */
  __device__ __forceinline__ int next_chunk(int c) const {
    for (int step = 0; step < (int)gridDim.x && ++c < nchunks;)
      if (chunk(c)) ++step;
    return c < nchunks ? c : nchunks;
  }
};

/** A tile of the walk: chunk c (nchunks once the walk is over), tile t within it. */
struct md_attn_pos {
  int c, t;
};

/** The walk's first tile from chunk c on (this CTA's chunks), or {nchunks, 0}. */
template <class S, class Pass>
__device__ __forceinline__ md_attn_pos md_attn_first_tile(const md_attn_block<S, Pass>& b, int c) {
  for (; c < b.nchunks; c = b.next_chunk(c)) {
    const int t = b.tile_from(c, 0);
    if (t < S::CHUNK_PAGES) return {c, t};
  }
  return {b.nchunks, 0};
}

/**
 * Copies the rows j < n of a KV head's tile for which needed(j) holds into a staged buffer (cp.async where
 * rows allow it): a position no block row sees is never read, as the guard tests check.
 */
template <typename T, class S, class Needed>
__device__ __forceinline__ void md_attn_stage(T* dst, const T* __restrict__ src, int n, const Needed& needed) {
  constexpr int E16 = 16 / (int)sizeof(T);
  if constexpr (S::ROW16) {
    constexpr int PER_ROW = S::ROW_BYTES / 16;
    for (int i = threadIdx.x; i < n * PER_ROW; i += S::THREADS)
      if (needed(i / PER_ROW)) md_cp_async16(dst + (i / PER_ROW) * S::ROW_STRIDE + (i % PER_ROW) * E16, src + (size_t)i * E16);
  } else if constexpr (S::TILE16) {
    // 16-byte pieces of the packed tile, each needed if a row it overlaps is (so an unseen row is read only
    // where it shares a piece with a seen one); the last may run past row n - 1 but stays within the page.
    for (int i = threadIdx.x; i < (n * S::ROW_BYTES + 15) / 16; i += S::THREADS) {
      const int j0 = i * 16 / S::ROW_BYTES, j1 = min((i * 16 + 15) / S::ROW_BYTES, n - 1);
      bool any = false;
      for (int j = j0; j <= j1; ++j) any = any || needed(j);
      if (any) md_cp_async16(dst + i * E16, src + (size_t)i * E16);
    }
  } else {
    for (int i = threadIdx.x; i < n * S::HEAD_DIM; i += S::THREADS)
      if (needed(i / S::HEAD_DIM)) dst[i] = src[i];
  }
}

/**
 * The block of rows CTA (x, kvh, r) works on, and its first chunk. Row r must start a block (the start of
 * its sequence's run of rows in the call, or ROWS rows after a block start), and the block must keep a
 * chunk (md_attn_chunk_kept) numbered blockIdx.x in ascending order: false, uniformly across the CTA,
 * when the CTA has no work. qpos: ROWS ints of shared memory for the block's positions.
 */
template <class S, class Pass>
__device__ __forceinline__ bool md_attn_open(const md_attn_args& a, md_attn_block<S, Pass>& b, int32_t* qpos, int* first) {
  const int r = blockIdx.z, tid = threadIdx.x;
  const int32_t slot = a.row_seq[r];
  b.params = a.params;
  b.len = slot >= 0 ? a.seq_len[slot] : 0;
  b.len = min(b.len, min(a.pages_per_seq * S::PAGE, S::MAX_CHUNKS * S::CHUNK));
  b.nchunks = b.len > 0 ? (b.len + S::CHUNK - 1) / S::CHUNK : 0;
  if (b.nchunks == 0) return false;  // the merge writes this row's zeros

  // Where row r's run of same-slot rows starts: the last row at or before r whose predecessor differs.
  __shared__ int run_start;
  if (tid == 0) run_start = 0;
  __syncthreads();
  for (int top = r;; top -= S::THREADS) {
    const int i = top - tid;
    const bool starts = i >= 0 && (i == 0 || a.row_seq[i - 1] != slot);
    if (starts) atomicMax(&run_start, i);
    if (__syncthreads_or(starts)) break;
  }
  if ((r - run_start) % S::ROWS != 0) return false;  // not a block start
  b.nb = 0;
#pragma unroll
  for (int i = 0; i < S::ROWS; ++i) b.nb += b.nb == i && r + i < a.rows && a.row_seq[r + i] == slot;
  if (tid < S::ROWS) qpos[tid] = tid < b.nb ? a.row_pos[r + tid] : 0;
  b.qpos = qpos;
  __syncthreads();
  int c = 0;
  for (int kept = 0; c < b.nchunks; ++c)
    if (b.chunk(c) && kept++ == (int)blockIdx.x) break;
  *first = c;
  return c < b.nchunks;
}

/**
 * A CTA's walk: from chunk `first` on, every gridDim.x-th chunk its block keeps, and within each the tiles
 * some block row may see, each staged in shared memory (`stage`: two buffers of K and V) while the
 * previous one is worked on. Before a tile's work, row_may / row_full (ROWS bools of shared memory) say how
 * each block row classifies it. Every thread calls reset() when a chunk starts, tile(p0, n, k, v) for each
 * tile of n positions from p0, and finish(c) when chunk c ends, between barriers.
 */
template <typename T, class S, class Pass, class Reset, class Tile, class Finish>
__device__ __forceinline__ void md_attn_walk(const md_attn_args& a, const md_attn_block<S, Pass>& b, int first, T* stage, bool* row_may,
                                             bool* row_full, Reset&& reset, Tile&& tile, Finish&& finish) {
  constexpr int P = S::PAGE, STAGE_ELTS = S::STAGE_BYTES / 4 / (int)sizeof(T);
  const int kvh = blockIdx.y, tid = threadIdx.x;
  const T* kc = static_cast<const T*>(a.k_cache);
  const T* vc = static_cast<const T*>(a.v_cache);
  const int32_t* pages = a.page_table + (size_t)a.row_seq[blockIdx.z] * a.pages_per_seq;
  auto tile_rows = [&](md_attn_pos at) {
    const int32_t p0 = at.c * S::CHUNK + at.t * P;
    return min(p0 + P, min((at.c + 1) * S::CHUNK, b.len)) - p0;
  };
  // Stages a tile's K and V: every row if some block row sees the whole tile, else the positions some sees.
  auto stage_tile = [&](md_attn_pos at, int buf) {
    const int32_t p0 = at.c * S::CHUNK + at.t * P;
    const int n = tile_rows(at);
    bool may[S::ROWS], all = false;
#pragma unroll
    for (int i = 0; i < S::ROWS; ++i) {
      may[i] = b.row_tile(i, at.c, at.t);
      all = all || (may[i] && Pass::tile_must(b.qpos[i], p0, p0 + n - 1, b.params));
    }
    auto needed = [&](int j) {
      bool any = all;
#pragma unroll
      for (int i = 0; i < S::ROWS; ++i) any = any || (may[i] && Pass::visible(b.qpos[i], p0 + j, b.params));
      return any;
    };
    const size_t row = md_kv_row<S::KV_HEADS, P, S::HEAD_DIM>(pages[p0 / P], kvh, 0);
    md_attn_stage<T, S>(stage + (2 * buf) * STAGE_ELTS, kc + row, n, needed);
    md_attn_stage<T, S>(stage + (2 * buf + 1) * STAGE_ELTS, vc + row, n, needed);
    md_cp_async_commit();
  };

  int c = first, buf = 0;
  md_attn_pos cur = md_attn_first_tile(b, first);
  reset();
  if (cur.c < b.nchunks) stage_tile(cur, 0);
  for (;;) {
    // Chunks before the current tile's are complete (some may have had no tile a block row sees).
    while (c < cur.c) {
      __syncthreads();  // the chunk's state complete
      finish(c);
      c = b.next_chunk(c);
      __syncthreads();  // partials read before the state restarts
      reset();
    }
    if (cur.c >= b.nchunks) break;
    md_attn_pos next = {cur.c, b.tile_from(cur.c, cur.t + 1)};
    if (next.t >= S::CHUNK_PAGES) next = md_attn_first_tile(b, b.next_chunk(cur.c));
    if (next.c < b.nchunks) {
      stage_tile(next, buf ^ 1);
      md_cp_async_wait<1>();
    } else {
      md_cp_async_wait<0>();
    }
    const int32_t p0 = cur.c * S::CHUNK + cur.t * P;
    const int n = tile_rows(cur);
    if (tid < S::ROWS) {
      row_may[tid] = b.row_tile(tid, cur.c, cur.t);
      row_full[tid] = row_may[tid] && Pass::tile_must(b.qpos[tid], p0, p0 + n - 1, b.params);
    }
    __syncthreads();  // the tile staged, the state (re)set, the rows classified
    tile(p0, n, static_cast<const T*>(stage + (2 * buf) * STAGE_ELTS), static_cast<const T*>(stage + (2 * buf + 1) * STAGE_ELTS));
    __syncthreads();  // this buffer consumed, the state updated
    cur = next;
    buf ^= 1;
  }
}

/** The partial of (row, head, chunk c) in the workspace: m, l, acc[HEAD_DIM]. */
template <class S>
__device__ __forceinline__ float* md_attn_partial(const md_attn_args& a, int row, int head, int c) {
  return a.workspace + (((size_t)row * S::HEADS + head) * S::MAX_CHUNKS + c) * S::PARTIAL;
}

/**
 * The chunk partials of one block of rows and one KV head on CUDA cores (md_attn_shape), for fp32 storage
 * and shapes the tensor-core kernel does not take: md_attn_open and md_attn_walk give it the block and its
 * tiles, so the draft's CTAs spread over the chunks its policy keeps and only tiles some block row may see
 * are read; a skipped chunk costs neither a CTA nor a partial. A Pass provides the static device functions
 * visible / tile_must / tile_may / score (rendered from the pass's IR) and SCALE (1 / sqrt(head_dim)); see
 * codegen/backends/common.ts renderPassStruct.
 */
template <typename T, class S, class Pass>
__global__ void __launch_bounds__(128, 2) md_attn_chunk_kernel(md_attn_args a) {
  constexpr int D = S::HEAD_DIM, G = S::GROUP, P = S::PAGE, NP = S::PAIRS;
  const int r = blockIdx.z, kvh = blockIdx.y, tid = threadIdx.x;
  const int warp = tid >> 5, lane = tid & 31;
  md_attn_block<S, Pass> b;
  __shared__ int32_t block_qpos[S::ROWS];
  __shared__ bool row_may[S::ROWS], row_full[S::ROWS];  // the current tile as each block row classifies it
  int first;
  if (!md_attn_open(a, b, block_qpos, &first)) return;
  const int np = b.nb * G;

  unsigned char* smem = md_dynamic_smem<unsigned char>();
  float* qs = reinterpret_cast<float*>(smem + S::STAGE_BYTES);  // [pair][D]
  float* acc = qs + NP * D;                                     // [pair][D]
  float* sc = acc + NP * D;                                     // [pair][SC_STRIDE]: scores, then weights
  float* part = sc + NP * S::SC_STRIDE;                         // [class 1..][pair][D]
  float* st_m = part + (S::SPLIT - 1) * NP * D;
  float* st_l = st_m + NP;
  float* st_alpha = st_l + NP;
  bool* vis = reinterpret_cast<bool*>(st_alpha + NP);  // [row][P]

  for (int i = tid; i < np * D; i += S::THREADS) qs[i] = a.q[((size_t)(r + i / (G * D)) * S::HEADS + kvh * G) * D + i % (G * D)];
  auto reset = [&]() {
    for (int i = tid; i < np; i += S::THREADS) st_m[i] = MD_NEG_INF, st_l[i] = 0.0f;
    for (int i = tid; i < np * D; i += S::THREADS) acc[i] = 0.0f;
  };
  // Partial of (row, head, chunk c) for each block row that keeps c: m, l, acc (m = -inf, l = 0 if empty).
  auto finish = [&](int c) {
    for (int i = tid; i < np * S::PARTIAL; i += S::THREADS) {
      const int p = i / S::PARTIAL, e = i % S::PARTIAL;
      if (b.row_chunk(p / G, c)) md_attn_partial<S>(a, r + p / G, kvh * G + p % G, c)[e] = e == 0 ? st_m[p] : e == 1 ? st_l[p] : acc[p * D + e - 2];
    }
  };
  auto tile = [&](int32_t p0, int n, const T* k_tile, const T* v_tile) {
    // Scores of every position its row sees, s = (q . k) * scale, then the pass's score function.
    for (int j0 = 0; j0 < n; j0 += 4 * S::PPW) {
      const int j = j0 + warp * S::PPW + lane / S::LPP;
      const int sub = lane % S::LPP;
      float kv[S::VPL][S::VEC] = {};
      if (j < n) {
#pragma unroll
        for (int v = 0; v < S::VPL; ++v) md_load_shared<T, S::VEC>(k_tile + j * S::ROW_STRIDE + (v * S::LPP + sub) * S::VEC, kv[v]);
      }
      for (int p = 0; p < np; ++p) {
        const int i = p / G;
        const bool live = j < n && row_may[i] && (row_full[i] || Pass::visible(b.qpos[i], p0 + j, b.params));
        float dot = 0.0f;
        if (live) {
#pragma unroll
          for (int v = 0; v < S::VPL; ++v) {
            const int d0 = (v * S::LPP + sub) * S::VEC;
#pragma unroll
            for (int e = 0; e < S::VEC; ++e) dot = __fmaf_rn(qs[p * D + d0 + e], kv[v][e], dot);
          }
        }
        dot = md_group_sum<S::LPP>(dot);
        if (j < n && sub == 0) {
          if (p % G == 0) vis[i * P + j] = live;
          sc[p * S::SC_STRIDE + j] = live ? Pass::score(__fmul_rn(dot, Pass::SCALE), b.qpos[i], p0 + j, kvh * G + p % G, b.params) : 0.0f;
        }
      }
    }
    __syncthreads();

    // Softmax step of each pair whose row may see the tile: a warp per pair.
    for (int p = warp; p < np; p += S::THREADS / 32) {
      const int i = p / G;
      if (!row_may[i]) continue;  // uniform across the warp
      float mt = MD_NEG_INF;
      for (int j = lane; j < n; j += 32)
        if (vis[i * P + j]) mt = fmaxf(mt, sc[p * S::SC_STRIDE + j]);
      mt = md_group_max<32>(mt);
      const float m_old = st_m[p];
      const float m_new = fmaxf(m_old, mt);
      float l = 0.0f;
      for (int j = lane; j < n; j += 32) {
        const float s = sc[p * S::SC_STRIDE + j];
        const float w = vis[i * P + j] && s != MD_NEG_INF ? expf(__fsub_rn(s, m_new)) : 0.0f;
        sc[p * S::SC_STRIDE + j] = w;
        l = __fadd_rn(l, w);
      }
      l = md_group_sum<32>(l);
      if (lane == 0) {
        const float alpha = m_old == MD_NEG_INF ? 0.0f : expf(__fsub_rn(m_old, m_new));
        st_alpha[p] = alpha;
        st_l[p] = __fadd_rn(__fmul_rn(st_l[p], alpha), l);
        st_m[p] = m_new;
      }
    }
    __syncthreads();

    // P.V: a thread works one unit (VEC_V dims, position class) for pairs pg, pg + PG, ...; V is read once
    // for them all. Class 0 joins the others' sums (ascending class) and the running state.
    float pv[S::PPT][S::VEC_V];
    const int unit = tid % S::UNITS, pg = tid / S::UNITS;
    const int d0 = (unit % S::DV) * S::VEC_V, cls = unit / S::DV;
    const bool works = pg < S::PG;
#pragma unroll
    for (int k = 0; k < S::PPT; ++k)
#pragma unroll
      for (int e = 0; e < S::VEC_V; ++e) pv[k][e] = 0.0f;
    if (works) {
      for (int j = cls; j < n; j += S::SPLIT) {
        float vv[S::VEC_V];
        bool loaded = false;
#pragma unroll
        for (int k = 0; k < S::PPT; ++k) {
          const int p = pg + k * S::PG;
          if (p >= np || !row_may[p / G] || !vis[(p / G) * P + j]) continue;
          if (!loaded) md_load_shared<T, S::VEC_V>(v_tile + j * S::ROW_STRIDE + d0, vv), loaded = true;
          const float w = sc[p * S::SC_STRIDE + j];
#pragma unroll
          for (int e = 0; e < S::VEC_V; ++e) pv[k][e] = __fmaf_rn(w, vv[e], pv[k][e]);
        }
      }
      if (S::SPLIT > 1 && cls > 0)
#pragma unroll
        for (int k = 0; k < S::PPT; ++k) {
          const int p = pg + k * S::PG;
          if (p < np)
#pragma unroll
            for (int e = 0; e < S::VEC_V; ++e) part[((cls - 1) * NP + p) * D + d0 + e] = pv[k][e];
        }
    }
    if constexpr (S::SPLIT > 1) __syncthreads();
    if (works && cls == 0)
#pragma unroll
      for (int k = 0; k < S::PPT; ++k) {
        const int p = pg + k * S::PG;
        if (p >= np || !row_may[p / G]) continue;
#pragma unroll
        for (int e = 0; e < S::VEC_V; ++e) {
          float t = pv[k][e];
#pragma unroll
          for (int q = 1; q < S::SPLIT; ++q) t = __fadd_rn(t, part[((q - 1) * NP + p) * D + d0 + e]);
          acc[p * D + d0 + e] = __fadd_rn(__fmul_rn(acc[p * D + d0 + e], st_alpha[p]), t);
        }
      }
  };
  md_attn_walk<T, S, Pass>(a, b, first, reinterpret_cast<T*>(smem), row_may, row_full, reset, tile, finish);
}

/**
 * Shape of the tensor-core attention: bf16 / fp16 storage, head_dim a multiple of 8 up to 128, at most 16
 * query heads per KV head (codegen/backends/cuda.ts attnUsesMma). A CTA of 4 warps takes a block of rows
 * and a KV head and walks its chunks and tiles as md_attn_chunk_kernel's does, with ROWS x GROUP <= 16
 * pairs: the rows of one mma.sync m16n8k16 tile. In each staged tile warp w works the 16-position blocks
 * w, w + 4, ...:
 *  - scores: A = the pairs' queries rounded to T, B = K as staged, fp32 accumulation over head_dim;
 *  - softmax: each pair's maximum over the whole tile (a 4-lane butterfly per warp, then across warps in
 *    shared memory), so every warp weighs with the pair's running maximum; each warp sums its own weights;
 *  - P.V: A = the weights rounded to T (the score fragments, re-packed), B = V as staged; each warp
 *    accumulates its own positions, and a chunk's partial adds the warps' accumulators and sums in warp
 *    order.
 */
template <typename T, int HEADS_, int KV_HEADS_, int HEAD_DIM_, int PAGE_, int CHUNK_PAGES_, int MAX_CHUNKS_, int ROWS_>
struct md_attn_mma_shape : md_attn_geometry<T, HEADS_, KV_HEADS_, HEAD_DIM_, PAGE_, CHUNK_PAGES_, MAX_CHUNKS_, ROWS_, md_attn_pad_bytes(HEAD_DIM_ * (int)sizeof(T), 1)> {
  typedef typename md_attn_mma_shape::md_attn_geometry G;
  static constexpr bool MMA = true;
  static constexpr int WARPS = G::THREADS / 32;
  /** q.k's steps of 16 dims (zeros past head_dim), P.V's tiles of 8 dims. */
  static constexpr int KSTEPS = (HEAD_DIM_ + 15) / 16, NTILES = HEAD_DIM_ / 8;
  /** A tile's 16-position blocks, blocks per warp, and the warps that get any. */
  static constexpr int BLOCKS = (PAGE_ + 15) / 16, BPW = (BLOCKS + WARPS - 1) / WARPS, WARPS_USED = BLOCKS < WARPS ? BLOCKS : WARPS;
  // Staged rows (md_attn_pad_bytes with one lane) have a stride of 16 bytes mod 128: a K fragment's 8
  // positions x 4 words, and a V fragment's 4 position pairs x 4 words, fall in distinct banks.
  /** Dynamic shared memory: stages, then the warps' accumulators and sums, tile maxima, visibility [row][P], seen by some row [P]. */
  static constexpr int SMEM_FLOATS = WARPS_USED * 16 * HEAD_DIM_ + WARPS_USED * 16 + WARPS * 16;
  static constexpr int SMEM_BYTES = G::STAGE_BYTES + 4 * SMEM_FLOATS + (ROWS_ + 1) * PAGE_;
  static_assert(sizeof(T) == 2 && HEAD_DIM_ % 8 == 0 && HEAD_DIM_ <= 128 && G::PAIRS <= 16, "the tensor-core attention's limits (attnUsesMma)");
  static_assert(G::ROW16 && G::TILE16, "tensor-core rows are whole 16-byte vectors");
};

/** Two fp32 values rounded to T (bf16 or fp16), packed as one mma operand register (lo: the lower index). */
template <typename T>
__device__ __forceinline__ uint32_t md_pack2(float lo, float hi) {
  const T v[2] = {md_from_f32<T>(lo), md_from_f32<T>(hi)};
  uint32_t u;
  memcpy(&u, v, sizeof u);
  return u;
}

/** The 16 bits of a staged element, or 0 (a zero operand) where `keep` is false. */
template <typename T>
__device__ __forceinline__ uint32_t md_bits16(const T* p, bool keep) {
  return keep ? (uint32_t) * reinterpret_cast<const unsigned short*>(p) : 0u;
}

/**
 * The chunk partials of one block of rows and one KV head on tensor cores (md_attn_mma_shape). Row
 * invariance: a pair's bits depend only on its own row (its queries, which tiles and positions it sees),
 * never on the block's other rows. Its rows of A are its own; B is zero at every position no block row
 * sees, so a product with another row's position has a zero weight, which leaves the fp32 sums as they
 * are; unless V holds inf or NaN there (0 x inf is NaN): a tile where some such position does is worked
 * again row by row, with V masked to that row's positions, as the row alone would see it. A pair whose row
 * does not see a tile keeps its state untouched, as if the tile were skipped.
 */
template <typename T, class S, class Pass>
__global__ void __launch_bounds__(128, 2) md_attn_mma_kernel(md_attn_args a) {
  constexpr int D = S::HEAD_DIM, G = S::GROUP, P = S::PAGE, NT = S::NTILES, KS = S::KSTEPS, BPW = S::BPW;
  const int r = blockIdx.z, kvh = blockIdx.y, tid = threadIdx.x;
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  md_attn_block<S, Pass> b;
  __shared__ int32_t block_qpos[S::ROWS];
  __shared__ bool row_may[S::ROWS], row_full[S::ROWS];
  int first;
  if (!md_attn_open(a, b, block_qpos, &first)) return;
  const int np = b.nb * G;

  unsigned char* smem = md_dynamic_smem<unsigned char>();
  float* part = reinterpret_cast<float*>(smem + S::STAGE_BYTES);  // [warp][pair][D]: accumulators at a chunk's end
  float* lpart = part + S::WARPS_USED * 16 * D;                    // [warp][pair]: sums of weights
  float* wmax = lpart + S::WARPS_USED * 16;                        // [warp][pair]: a tile's maxima
  bool* vis = reinterpret_cast<bool*>(wmax + S::WARPS * 16);       // [row][P]
  bool* any = vis + S::ROWS * P;                                   // [P]: seen by some block row

  // The lane's two pairs: rows g and g + 8 of the mma tiles (C element e belongs to pair pr[e / 2]).
  const int pr[2] = {g, g + 8};
  const bool real[2] = {g < np, g + 8 < np};
  const int ir[2] = {real[0] ? g / G : 0, real[1] ? (g + 8) / G : 0};
  uint32_t qa[KS][4];  // the pairs' queries as A fragments; zero past the block's pairs and past head_dim
  {
    auto qv = [&](int p, int d) { return p < np && d < D ? a.q[((size_t)(r + p / G) * S::HEADS + kvh * G + p % G) * D + d] : 0.0f; };
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      const int d0 = ks * 16 + 2 * t4;
      qa[ks][0] = md_pack2<T>(qv(g, d0), qv(g, d0 + 1));
      qa[ks][1] = md_pack2<T>(qv(g + 8, d0), qv(g + 8, d0 + 1));
      qa[ks][2] = md_pack2<T>(qv(g, d0 + 8), qv(g, d0 + 9));
      qa[ks][3] = md_pack2<T>(qv(g + 8, d0 + 8), qv(g + 8, d0 + 9));
    }
  }
  float acc[NT][4], m_run[2], l_run[2];  // this warp's positions of the chunk so far; m_run is the CTA's
  auto reset = [&]() {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[nt][e] = 0.0f;
    m_run[0] = m_run[1] = MD_NEG_INF;
    l_run[0] = l_run[1] = 0.0f;
  };
  auto finish = [&](int c) {
    if (warp < S::WARPS_USED) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) part[(warp * 16 + pr[e >> 1]) * D + nt * 8 + 2 * t4 + (e & 1)] = acc[nt][e];
      if (t4 == 0) lpart[warp * 16 + g] = l_run[0], lpart[warp * 16 + g + 8] = l_run[1];
    }
    if (warp == 0 && t4 == 0) wmax[g] = m_run[0], wmax[g + 8] = m_run[1];
    __syncthreads();
    for (int i = tid; i < np * S::PARTIAL; i += S::THREADS) {
      const int p = i / S::PARTIAL, e = i % S::PARTIAL;
      if (!b.row_chunk(p / G, c)) continue;
      float v = wmax[p];  // m: the CTA's
      if (e > 0) {          // l or acc: the warps' sums in warp order
        const float* src = e == 1 ? lpart + p : part + p * D + e - 2;
        const int warp_stride = e == 1 ? 16 : 16 * D;
        v = src[0];
#pragma unroll
        for (int w = 1; w < S::WARPS_USED; ++w) v = __fadd_rn(v, src[w * warp_stride]);
      }
      md_attn_partial<S>(a, r + p / G, kvh * G + p % G, c)[e] = v;
    }
  };
  auto tile = [&](int32_t p0, int n, const T* k_tile, const T* v_tile) {
    // Which positions each block row sees: all n for every row of a tile they all see whole; otherwise
    // per row, and then V is checked for inf / NaN where some row sees and another does not.
    bool full = true;
#pragma unroll
    for (int i = 0; i < S::ROWS; ++i) full = full && (i >= b.nb || row_full[i]);
    bool per_row = false;
    if (!full) {
      for (int i = tid; i < b.nb * n; i += S::THREADS)
        vis[(i / n) * P + i % n] = row_may[i / n] && (row_full[i / n] || Pass::visible(b.qpos[i / n], p0 + i % n, b.params));
      __syncthreads();
      bool bad = false;
      for (int i = tid; i < n * (D / 8); i += S::THREADS) {
        const int j = i / (D / 8);
        bool some = false, all = true;
        for (int row = 0; row < b.nb; ++row) some = some || vis[row * P + j], all = all && vis[row * P + j];
        if (i % (D / 8) == 0) any[j] = some;
        if (some && !all)
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            const float x = md_to_f32(v_tile[j * S::ROW_STRIDE + (i % (D / 8)) * 8 + e]);
            bad = bad || !(__fsub_rn(x, x) == 0.0f);
          }
      }
      per_row = __syncthreads_or(bad);
    }
    auto sees = [&](int row, int j) { return j < n && (full || vis[row * P + j]); };
    auto seen = [&](int j) { return j < n && (full || any[j]); };

    // Scores of this warp's positions; -inf where the pair's row does not see the position.
    float s[BPW][2][4];
#pragma unroll
    for (int u = 0; u < BPW; ++u) {
      const int jb = (warp + u * S::WARPS) * 16;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int j0 = jb + h * 8;
        float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (j0 < n) {  // uniform across the warp
          const int jk = j0 + g;  // this lane's column of B: a position
          const bool kin = seen(jk);
          const T* krow = k_tile + jk * S::ROW_STRIDE + 2 * t4;
#pragma unroll
          for (int ks = 0; ks < KS; ++ks) {
            const uint32_t kb[2] = {kin ? *reinterpret_cast<const uint32_t*>(krow + ks * 16) : 0u,
                                    kin && ks * 16 + 8 < D ? *reinterpret_cast<const uint32_t*>(krow + ks * 16 + 8) : 0u};
            md_mma_16816(T(), c, qa[ks], kb, c);
          }
        }
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = j0 + 2 * t4 + (e & 1), k = e >> 1;
          s[u][h][e] = real[k] && sees(ir[k], j)
                           ? Pass::score(__fmul_rn(c[e], Pass::SCALE), b.qpos[ir[k]], p0 + j, kvh * G + pr[k] % G, b.params)
                           : MD_NEG_INF;
        }
      }
    }

    // The tile's maximum of each pair over all warps, then the weights and this warp's sums of them.
    float mt[2] = {MD_NEG_INF, MD_NEG_INF};
#pragma unroll
    for (int u = 0; u < BPW; ++u)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 4; ++e) mt[e >> 1] = fmaxf(mt[e >> 1], s[u][h][e]);
    mt[0] = md_group_max<4>(mt[0]);
    mt[1] = md_group_max<4>(mt[1]);
    if (t4 == 0) wmax[warp * 16 + g] = mt[0], wmax[warp * 16 + g + 8] = mt[1];
    __syncthreads();
    float m_new[2], alpha[2];
    bool may[2];
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      float m = wmax[pr[k]];
#pragma unroll
      for (int w = 1; w < S::WARPS; ++w) m = fmaxf(m, wmax[w * 16 + pr[k]]);
      may[k] = real[k] && row_may[ir[k]];
      m_new[k] = fmaxf(m_run[k], m);
      alpha[k] = m_run[k] == MD_NEG_INF ? 0.0f : expf(__fsub_rn(m_run[k], m_new[k]));
    }
    float lt[2] = {0.0f, 0.0f};
#pragma unroll
    for (int u = 0; u < BPW; ++u)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float x = s[u][h][e];
          const float w = x != MD_NEG_INF ? expf(__fsub_rn(x, m_new[e >> 1])) : 0.0f;
          s[u][h][e] = w;
          lt[e >> 1] = __fadd_rn(lt[e >> 1], w);
        }
    lt[0] = md_group_sum<4>(lt[0]);
    lt[1] = md_group_sum<4>(lt[1]);
#pragma unroll
    for (int k = 0; k < 2; ++k)
      if (may[k]) l_run[k] = __fadd_rn(__fmul_rn(l_run[k], alpha[k]), lt[k]), m_run[k] = m_new[k];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (may[e >> 1]) acc[nt][e] = __fmul_rn(acc[nt][e], alpha[e >> 1]);

    // P.V of this warp's positions: B is V where `keep` says, zero elsewhere; only pairs of rows `mine`
    // says take the result.
    auto pv = [&](const uint32_t (&pa)[4], int jb, auto keep, auto mine) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int d = nt * 8 + g, j = jb + 2 * t4;
        const uint32_t vb[2] = {md_bits16(v_tile + j * S::ROW_STRIDE + d, keep(j)) | md_bits16(v_tile + (j + 1) * S::ROW_STRIDE + d, keep(j + 1)) << 16,
                                md_bits16(v_tile + (j + 8) * S::ROW_STRIDE + d, keep(j + 8)) |
                                    md_bits16(v_tile + (j + 9) * S::ROW_STRIDE + d, keep(j + 9)) << 16};
        float out[4];
        md_mma_16816(T(), out, pa, vb, acc[nt]);
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (may[e >> 1] && mine(ir[e >> 1])) acc[nt][e] = out[e];
      }
    };
#pragma unroll
    for (int u = 0; u < BPW; ++u) {
      const int jb = (warp + u * S::WARPS) * 16;
      if (jb >= n) break;  // uniform across the warp
      const uint32_t pa[4] = {md_pack2<T>(s[u][0][0], s[u][0][1]), md_pack2<T>(s[u][0][2], s[u][0][3]), md_pack2<T>(s[u][1][0], s[u][1][1]),
                              md_pack2<T>(s[u][1][2], s[u][1][3])};
      if (!per_row) {
        pv(pa, jb, seen, [](int) { return true; });
      } else {
        for (int row = 0; row < b.nb; ++row)
          pv(pa, jb, [&](int j) { return sees(row, j); }, [&](int i) { return i == row; });
      }
    }
  };
  md_attn_walk<T, S, Pass>(a, b, first, reinterpret_cast<T*>(smem), row_may, row_full, reset, tile, finish);
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

/** A chunk kernel's launch; past 48 KiB its dynamic shared memory needs opting in (per device, so on every launch). */
template <class S, void (*KERNEL)(md_attn_args)>
static bool md_attn_start(const dim3& grid, cudaStream_t s, const md_attn_args& a) {
  if (S::SMEM_BYTES > 48 * 1024 && cudaFuncSetAttribute(KERNEL, cudaFuncAttributeMaxDynamicSharedMemorySize, S::SMEM_BYTES) != cudaSuccess)
    return false;
  MD_LAUNCH(grid, S::THREADS, S::SMEM_BYTES, s, KERNEL)(a);
  return true;
}

/**
 * Host side of a pass's attention (md_attn_<pass>_b<B>), after the entry point's checks of the host
 * values (the CPU's): the chunk kernel with enough chunk slots per (block, KV head) for about TARGET_CTAS
 * working CTAs (never more than MAX_CHUNKS; blocks counted as if rows came ROWS to a sequence), then the
 * merge. Slots, positions and lengths are in device memory: the kernels clamp instead of refusing
 * (codegen/abi.ts, attn). How many CTAs split a block's chunks changes nothing of its rows' bits
 * (md_attn_shape).
 */
template <typename T, class S, class Pass, int TARGET_CTAS>
static int md_attn_launch(const md_attn_args* args) {
  const md_attn_args a = *args;
  const long long pairs = (long long)((a.rows + S::ROWS - 1) / S::ROWS) * S::KV_HEADS;
  const long long slots = (TARGET_CTAS + pairs - 1) / pairs;
  const unsigned chunk_slots = (unsigned)(slots < 1 ? 1 : slots > S::MAX_CHUNKS ? S::MAX_CHUNKS : slots);
  cudaStream_t s = (cudaStream_t)a.stream;
  const dim3 chunk_grid(chunk_slots, S::KV_HEADS, a.rows), merge_grid(S::HEADS, a.rows);
  bool started;
  if constexpr (S::MMA)
    started = md_attn_start<S, md_attn_mma_kernel<T, S, Pass>>(chunk_grid, s, a);
  else
    started = md_attn_start<S, md_attn_chunk_kernel<T, S, Pass>>(chunk_grid, s, a);
  if (!started) return MD_ERR_LAUNCH;
  MD_LAUNCH(merge_grid, S::HEAD_DIM, 0, s, md_attn_merge_kernel<S, Pass>)(a);
  return md_launched();
}
