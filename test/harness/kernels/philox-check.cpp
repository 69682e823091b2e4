// Serves templates/common/md_philox.h and md_sampling.h's exp, log and Gumbel noise to test/kernels/philox.test.ts: one query per stdin line, one answer
// per stdout line, all numbers as decimal (uint64 seeds included) and answers in hex.
//   B c0 c1 c2 c3 k0 k1              -> the 4 words of md_philox4x32_10
//   D seed position stream draw      -> md_philox_draw (position is an int32)
//   U x                              -> md_uniform01(x), md_uniform_open01(x) as float bits, md_gumbel(x) as double bits
//   E bits / L bits                  -> md_exp_f64 / md_log_f64 of the double with these bits (hex), as bits
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "md_sampling.h"

int main() {
  char op[4];
  while (scanf("%3s", op) == 1) {
    if (op[0] == 'B') {
      md_philox4 c;
      uint32_t k0, k1;
      if (scanf("%" SCNu32 " %" SCNu32 " %" SCNu32 " %" SCNu32 " %" SCNu32 " %" SCNu32, &c.v[0], &c.v[1], &c.v[2], &c.v[3], &k0, &k1) != 6) return 2;
      const md_philox4 o = md_philox4x32_10(c, k0, k1);
      printf("%08" PRIx32 " %08" PRIx32 " %08" PRIx32 " %08" PRIx32 "\n", o.v[0], o.v[1], o.v[2], o.v[3]);
    } else if (op[0] == 'D') {
      uint64_t seed;
      int32_t pos;
      uint32_t stream, draw;
      if (scanf("%" SCNu64 " %" SCNd32 " %" SCNu32 " %" SCNu32, &seed, &pos, &stream, &draw) != 4) return 2;
      printf("%08" PRIx32 "\n", md_philox_draw(seed, pos, stream, draw));
    } else if (op[0] == 'U') {
      uint32_t x;
      if (scanf("%" SCNu32, &x) != 1) return 2;
      const double g = md_gumbel(x);
      uint64_t gb;
      memcpy(&gb, &g, sizeof gb);
      printf("%08" PRIx32 " %08" PRIx32 " %016" PRIx64 "\n", md_f32_bits(md_uniform01(x)), md_f32_bits(md_uniform_open01(x)), gb);
    } else if (op[0] == 'E' || op[0] == 'L') {
      uint64_t xb;
      if (scanf("%" SCNx64, &xb) != 1) return 2;
      const double x = md_bits_f64(xb);
      printf("%016" PRIx64 "\n", md_f64_bits(op[0] == 'E' ? md_exp_f64(x) : md_log_f64(x)));
    } else {
      return 2;
    }
  }
  return 0;
}
