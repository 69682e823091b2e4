// The attention kernels' exp (md::vec::exp and md::vec::exp1, templates/cpu/md_cpu.h.hbs) against libm's
// double exp, compiled against a rendered md_cpu.h by test/kernels/attention-exp.test.ts. Walks every
// 193rd float from -110 to 100 and the special values; prints one JSON line: lanes that differ from the
// scalar, the worst error in ulps of the correctly rounded result, and a hash of every result's bits (so
// that two builds, native and MD_PORTABLE, can be compared).
#include <math.h>
#include <stdio.h>
#include <vector>

#include "md_cpu.h"

static double ulp_of(double want) {  // the spacing of floats at |want| (subnormals: 2^-149)
  const double a = fabs(want);
  if (a < ldexp(1.0, -126)) return ldexp(1.0, -149);
  int e;
  frexp(a, &e);
  return ldexp(1.0, e - 24);
}

int main() {
  std::vector<float> xs = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f, -1.0f, 88.72283935546875f, 88.7228469848632812f, -103.972084045410f, -103.97209f, -87.33654f, 0.5f * logf(2.0f)};
  for (uint32_t u = 0x80000000u; u <= md_f32_bits(-110.0f); u += 193) xs.push_back(md_bits_f32(u));
  for (uint32_t u = 0; u <= md_f32_bits(100.0f); u += 193) xs.push_back(md_bits_f32(u));
  while (xs.size() % md::vec::W) xs.push_back(0.0f);
  long lane_mismatches = 0;
  double worst = 0.0;
  float worst_x = 0.0f;
  uint64_t hash = 1469598103934665603ull;
  for (size_t i = 0; i < xs.size(); i += md::vec::W) {
    float got[md::vec::W];
    md::vec::store(got, md::vec::exp(md::vec::load(&xs[i])));
    for (int j = 0; j < md::vec::W; ++j) {
      const float x = xs[i + j], one = md::vec::exp1(x);
      if (md_f32_bits(one) != md_f32_bits(got[j])) ++lane_mismatches;
      hash = (hash ^ md_f32_bits(got[j])) * 1099511628211ull;
      const double want = exp((double)x);
      if (x != x) {
        if (got[j] == got[j]) ++lane_mismatches;  // NaN must stay NaN: count it as a failure
        continue;
      }
      if (want > 3.4028234663852886e38) {  // beyond FLT_MAX: must be inf or FLT_MAX
        if (!(got[j] >= 3.4028234e38f)) worst = INFINITY;
        continue;
      }
      const double err = fabs((double)got[j] - want) / ulp_of(want);
      if (err > worst) worst = err, worst_x = x;
    }
  }
  // Special values as bit patterns (JSON has no inf or NaN).
  printf("{\"inputs\":%zu,\"laneMismatches\":%ld,\"worstUlp\":%.4f,\"worstX\":%.9g,\"hash\":\"%016llx\",\"specials\":[%u,%u,%u,%u]}\n", xs.size(),
         lane_mismatches, worst, worst_x, (unsigned long long)hash, md_f32_bits(md::vec::exp1(0.0f)), md_f32_bits(md::vec::exp1(-INFINITY)),
         md_f32_bits(md::vec::exp1(INFINITY)), md_f32_bits(md::vec::exp1(NAN)));
  return 0;
}
