// Helpers that rendered DSL expressions call: one definition of each IR op for host C++ and CUDA, so the
// two backends differ only in this file's #ifdefs. Semantics match codegen/ops.ts (the interpreter):
// wrapping i32 arithmetic, x % 0 == 0, f32 ops rounded after each op (never contracted into FMAs),
// Math.min/max semantics (NaN propagates, -0 < +0).
#pragma once
#include <stdint.h>
#include <math.h>
#include <string.h>

#ifdef __CUDACC__
#define MD_FN __host__ __device__ __forceinline__
#else
#define MD_FN static inline
#endif

MD_FN float md_bits_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
#endif
}
MD_FN uint32_t md_f32_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
#endif
}

MD_FN int32_t md_add_i32(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
MD_FN int32_t md_sub_i32(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }
MD_FN int32_t md_mul_i32(int32_t a, int32_t b) { return (int32_t)((uint32_t)a * (uint32_t)b); }
MD_FN int32_t md_neg_i32(int32_t a) { return (int32_t)(0u - (uint32_t)a); }
MD_FN int32_t md_abs_i32(int32_t a) { return a < 0 ? md_neg_i32(a) : a; }
MD_FN int32_t md_mod_i32(int32_t a, int32_t b) { return (b == 0 || (b == -1)) ? 0 : a % b; }
MD_FN int32_t md_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
MD_FN int32_t md_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
MD_FN float md_i32_to_f32(int32_t a) { return (float)a; }

#ifdef __CUDA_ARCH__
MD_FN float md_add_f32(float a, float b) { return __fadd_rn(a, b); }
MD_FN float md_sub_f32(float a, float b) { return __fsub_rn(a, b); }
MD_FN float md_mul_f32(float a, float b) { return __fmul_rn(a, b); }
MD_FN float md_div_f32(float a, float b) { return __fdiv_rn(a, b); }
MD_FN float md_sqrt_f32(float a) { return __fsqrt_rn(a); }
#else
MD_FN float md_add_f32(float a, float b) { return a + b; }
MD_FN float md_sub_f32(float a, float b) { return a - b; }
MD_FN float md_mul_f32(float a, float b) { return a * b; }
MD_FN float md_div_f32(float a, float b) { return a / b; }
MD_FN float md_sqrt_f32(float a) { return sqrtf(a); }
#endif
MD_FN float md_neg_f32(float a) { return -a; }
MD_FN float md_mod_f32(float a, float b) { return fmodf(a, b); }
MD_FN float md_abs_f32(float a) { return fabsf(a); }
MD_FN float md_floor_f32(float a) { return floorf(a); }
MD_FN float md_ceil_f32(float a) { return ceilf(a); }
MD_FN float md_trunc_f32(float a) { return truncf(a); }
MD_FN float md_exp_f32(float a) { return expf(a); }
MD_FN float md_log_f32(float a) { return logf(a); }
MD_FN float md_tanh_f32(float a) { return tanhf(a); }
MD_FN float md_pow_f32(float a, float b) {
  // Math.pow: NaN exponent gives NaN, and (+-1)^(+-Infinity) is NaN (C's powf gives 1 for both).
  if (b != b) return md_bits_f32(0x7fc00000u);
  if (fabsf(a) == 1.0f && fabsf(b) == md_bits_f32(0x7f800000u)) return md_bits_f32(0x7fc00000u);
  return powf(a, b);
}
MD_FN float md_min_f32(float a, float b) {
  if (a != a || b != b) return md_bits_f32(0x7fc00000u);
  if (a == b) return (md_f32_bits(a) >> 31) ? a : b;  // -0 < +0
  return a < b ? a : b;
}
MD_FN float md_max_f32(float a, float b) {
  if (a != a || b != b) return md_bits_f32(0x7fc00000u);
  if (a == b) return (md_f32_bits(a) >> 31) ? b : a;
  return a > b ? a : b;
}
/** Runtime params travel as floats; an i32 param is exact up to 2^24. */
MD_FN int32_t md_param_i32(float x) { return (int32_t)x; }
