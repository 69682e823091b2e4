// The C++ copies of the bf16/fp16 conversions, run over given bit patterns for test/runtime/dtype-copies.test.ts,
// which compares them with the reference (model/dtypes.ts) bit for bit: the runtime's (runtime/src/dtype.*)
// and the CPU kernels' (md_cpu.h, rendered from templates/cpu/md_cpu.h.hbs).
//
// dtype_copies <f32 patterns: u32 LE...> <out>: writes, for every 16-bit pattern h (65,536 of them) the fp32
// bits of runtime f16 -> f32, kernel f16 -> f32, runtime bf16 -> f32, kernel bf16 -> f32 (4 x u32 LE), then
// for every input pattern runtime f32 -> bf16, kernel f32 -> bf16, runtime f32 -> f16, kernel f32 -> f16
// (4 x u16 LE).
#include <cstdio>
#include <cstring>
#include <vector>

#include "dtype.h"
#include "md_cpu.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: dtype_copies <patterns.u32> <out>\n");
    return 1;
  }
  std::FILE* in = std::fopen(argv[1], "rb");
  if (!in) {
    std::perror(argv[1]);
    return 1;
  }
  std::vector<uint32_t> patterns;
  uint32_t u;
  while (std::fread(&u, 4, 1, in) == 1) patterns.push_back(u);
  std::fclose(in);

  std::vector<uint32_t> widened;
  widened.reserve(4 * 65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    widened.push_back(md::f32_to_bits(md::f16_to_f32(uint16_t(h))));
    widened.push_back(::md_f32_bits(md::md_f32_from_f16(uint16_t(h))));
    widened.push_back(md::f32_to_bits(md::bf16_to_f32(uint16_t(h))));
    widened.push_back(::md_f32_bits(md::md_f32_from_bf16(uint16_t(h))));
  }
  std::vector<uint16_t> narrowed;
  narrowed.reserve(4 * patterns.size());
  for (uint32_t p : patterns) {
    const float x = md::bits_to_f32(p);
    narrowed.push_back(md::f32_to_bf16(x));
    narrowed.push_back(md::md_bf16_from_f32(x));
    narrowed.push_back(md::f32_to_f16(x));
    narrowed.push_back(md::md_f16_from_f32(x));
  }
  std::FILE* out = std::fopen(argv[2], "wb");
  if (!out) {
    std::perror(argv[2]);
    return 1;
  }
  const bool ok = std::fwrite(widened.data(), 4, widened.size(), out) == widened.size() &&
                  std::fwrite(narrowed.data(), 2, narrowed.size(), out) == narrowed.size();
  return std::fclose(out) == 0 && ok ? 0 : 1;
}
