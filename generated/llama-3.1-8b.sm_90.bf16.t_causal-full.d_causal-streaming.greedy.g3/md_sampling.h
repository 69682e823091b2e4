// The arithmetic of sampling, one definition for host C++ and CUDA (MD_FN): the double exp and log every
// sampler uses (ports of fdlibm's e_exp.c and e_log.c, written with correctly rounded basic operations
// only, so the host, the device and model/sampling.ts — the TypeScript port — compute the same bits),
// Gumbel noise, and the per-element steps of md_sample (the filters and the Gumbel-max draw) that both
// backends' kernels share. The algorithm itself, and what each filter means: docs/ABI.md, "Sampling".
#pragma once
#include <stdint.h>
#include <string.h>

#include "md_expr.h"
#include "md_philox.h"

MD_FN uint64_t md_f64_bits(double x) {
#ifdef __CUDA_ARCH__
  return (uint64_t)__double_as_longlong(x);
#else
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  return u;
#endif
}
MD_FN double md_bits_f64(uint64_t u) {
#ifdef __CUDA_ARCH__
  return __longlong_as_double((long long)u);
#else
  double x;
  memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// Correctly rounded double operations: nvcc would otherwise contract a * b + c into an FMA on the device
// (host modules build with -ffp-contract=off), and the bits would differ from the host's.
#ifdef __CUDA_ARCH__
MD_FN double md_dadd(double a, double b) { return __dadd_rn(a, b); }
MD_FN double md_dsub(double a, double b) { return __dsub_rn(a, b); }
MD_FN double md_dmul(double a, double b) { return __dmul_rn(a, b); }
MD_FN double md_ddiv(double a, double b) { return __ddiv_rn(a, b); }
#else
MD_FN double md_dadd(double a, double b) { return a + b; }
MD_FN double md_dsub(double a, double b) { return a - b; }
MD_FN double md_dmul(double a, double b) { return a * b; }
MD_FN double md_ddiv(double a, double b) { return a / b; }
#endif

/** `x` with its high 32-bit word replaced. */
MD_FN double md_with_hi(double x, uint32_t hi) { return md_bits_f64(((uint64_t)hi << 32) | (md_f64_bits(x) & 0xffffffffu)); }

/** e^x: fdlibm's __ieee754_exp (error < 1 ulp). */
MD_FN double md_exp_f64(double x) {
  const double ln2hi = 6.93147180369123816490e-01, ln2lo = 1.90821492927058770002e-10, invln2 = 1.44269504088896338700e+00;
  const double P1 = 1.66666666666666019037e-01, P2 = -2.77777777770155933842e-03, P3 = 6.61375632143793436117e-05,
               P4 = -1.65339022054652515390e-06, P5 = 4.13813679705723846039e-08;
  const double o_threshold = 7.09782712893383973096e+02, u_threshold = -7.45133219101941108420e+02;
  const double twom1000 = 9.33263618503218878990e-302;  // 2^-1000
  uint32_t hx = (uint32_t)(md_f64_bits(x) >> 32);
  const int xsb = (int)(hx >> 31);
  hx &= 0x7fffffffu;
  if (hx >= 0x40862E42u) {  // |x| >= 709.78...
    if (hx >= 0x7ff00000u) {
      if (((hx & 0xfffffu) | (uint32_t)md_f64_bits(x)) != 0) return md_dadd(x, x);  // NaN
      return xsb == 0 ? x : 0.0;                                                     // exp(+-inf) = inf, 0
    }
    if (x > o_threshold) return md_bits_f64(0x7ff0000000000000ull);  // overflow
    if (x < u_threshold) return 0.0;                                  // underflow
  }
  double hi = 0, lo = 0;
  int k = 0;
  if (hx > 0x3fd62e42u) {  // |x| > 0.5 ln2
    if (hx < 0x3FF0A2B2u) {  // and |x| < 1.5 ln2
      hi = xsb ? md_dadd(x, ln2hi) : md_dsub(x, ln2hi);
      lo = xsb ? -ln2lo : ln2lo;
      k = 1 - xsb - xsb;
    } else {
      k = (int)md_dadd(md_dmul(invln2, x), xsb ? -0.5 : 0.5);
      const double t = (double)k;
      hi = md_dsub(x, md_dmul(t, ln2hi));  // t * ln2hi is exact here
      lo = md_dmul(t, ln2lo);
    }
    x = md_dsub(hi, lo);
  } else if (hx < 0x3e300000u) {  // |x| < 2^-28
    return md_dadd(1.0, x);
  }
  const double t = md_dmul(x, x);
  const double poly = md_dadd(P1, md_dmul(t, md_dadd(P2, md_dmul(t, md_dadd(P3, md_dmul(t, md_dadd(P4, md_dmul(t, P5))))))));
  const double c = md_dsub(x, md_dmul(t, poly));
  if (k == 0) return md_dsub(1.0, md_dsub(md_ddiv(md_dmul(x, c), md_dsub(c, 2.0)), x));
  const double y = md_dsub(1.0, md_dsub(md_dsub(lo, md_ddiv(md_dmul(x, c), md_dsub(2.0, c))), hi));
  const uint32_t yhi = (uint32_t)(md_f64_bits(y) >> 32);
  if (k >= -1021) return md_with_hi(y, yhi + ((uint32_t)k << 20));
  return md_dmul(md_with_hi(y, yhi + ((uint32_t)(k + 1000) << 20)), twom1000);
}

/** log(x): fdlibm's __ieee754_log (error < 1 ulp). */
MD_FN double md_log_f64(double x) {
  const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10, two54 = 1.80143985094819840000e+16;
  const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01, Lg3 = 2.857142874366239149e-01,
               Lg4 = 2.222219843214978396e-01, Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
               Lg7 = 1.479819860511658591e-01;
  int32_t hx = (int32_t)(md_f64_bits(x) >> 32);
  const uint32_t lx = (uint32_t)md_f64_bits(x);
  int32_t k = 0;
  if (hx < 0x00100000) {  // x < 2^-1022
    if (((hx & 0x7fffffff) | (int32_t)lx) == 0) return md_bits_f64(0xfff0000000000000ull);  // log(+-0) = -inf
    if (hx < 0) return md_bits_f64(0x7ff8000000000000ull);                                  // log(-x) = NaN
    k -= 54;
    x = md_dmul(x, two54);  // subnormal: scale up
    hx = (int32_t)(md_f64_bits(x) >> 32);
  }
  if (hx >= 0x7ff00000) return md_dadd(x, x);
  k += (hx >> 20) - 1023;
  hx &= 0x000fffff;
  const int32_t i = (hx + 0x95f64) & 0x100000;
  x = md_with_hi(x, (uint32_t)(hx | (i ^ 0x3ff00000)));  // normalize x or x / 2
  k += (i >> 20);
  const double f = md_dsub(x, 1.0);
  const double dk = (double)k;
  if ((0x000fffff & (2 + hx)) < 3) {  // |f| < 2^-20
    if (f == 0.0) return k == 0 ? 0.0 : md_dadd(md_dmul(dk, ln2_hi), md_dmul(dk, ln2_lo));
    const double R = md_dmul(md_dmul(f, f), md_dsub(0.5, md_dmul(0.33333333333333333, f)));
    if (k == 0) return md_dsub(f, R);
    return md_dsub(md_dmul(dk, ln2_hi), md_dsub(md_dsub(R, md_dmul(dk, ln2_lo)), f));
  }
  const double s = md_ddiv(f, md_dadd(2.0, f));
  const double z = md_dmul(s, s);
  const double w = md_dmul(z, z);
  const int32_t ij = (hx - 0x6147a) | (0x6b851 - hx);
  const double t1 = md_dmul(w, md_dadd(Lg2, md_dmul(w, md_dadd(Lg4, md_dmul(w, Lg6)))));
  const double t2 = md_dmul(z, md_dadd(Lg1, md_dmul(w, md_dadd(Lg3, md_dmul(w, md_dadd(Lg5, md_dmul(w, Lg7)))))));
  const double R = md_dadd(t2, t1);
  if (ij > 0) {
    const double hfsq = md_dmul(md_dmul(0.5, f), f);
    if (k == 0) return md_dsub(f, md_dsub(hfsq, md_dmul(s, md_dadd(hfsq, R))));
    return md_dsub(md_dmul(dk, ln2_hi), md_dsub(md_dsub(hfsq, md_dadd(md_dmul(s, md_dadd(hfsq, R)), md_dmul(dk, ln2_lo))), f));
  }
  if (k == 0) return md_dsub(f, md_dmul(s, md_dsub(f, R)));
  return md_dsub(md_dmul(dk, ln2_hi), md_dsub(md_dsub(md_dmul(s, md_dsub(f, R)), md_dmul(dk, ln2_lo)), f));
}

/** Standard Gumbel noise of a uint32: -log(-log(u)) of its open uniform (md_philox.h), in double. */
MD_FN double md_gumbel(uint32_t x) { return -md_log_f64(-md_log_f64((double)md_uniform_open01(x))); }

/**
 * A row's sampling parameters are valid (docs/ABI.md, "Sampling"): temperature finite and >= 0, top_k >= 0,
 * top_p in (0, 1], min_p in [0, 1]. NaN fails every comparison, so it is never valid.
 */
MD_FN bool md_sampling_params_ok(float temperature, int32_t top_k, float top_p, float min_p) {
  return temperature >= 0.0f && temperature - temperature == 0.0f && top_k >= 0 && top_p > 0.0f && top_p <= 1.0f && min_p >= 0.0f &&
         min_p <= 1.0f;
}
