// Storage dtypes of weights and the KV cache, and scalar conversions by the reference semantics of
// model/dtypes.ts (round to nearest even; a NaN stays a quiet NaN with its sign and top payload bits),
// tested bit for bit against it by test/runtime/dtype-copies.test.ts.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace md {

enum class DType { F32, BF16, F16 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

/** safetensors spelling: F32, BF16, F16. */
const char* dtype_safetensors_name(DType t);
/** Manifest / DSL spelling: fp32, bf16, fp16. */
const char* dtype_manifest_name(DType t);
/** Parses a storage dtype as the manifest and the APIs spell it (bf16, fp16, fp32); false for anything else. */
bool parse_storage_dtype(const std::string& s, DType* out);
/** Parses a safetensors header dtype this runtime can load (F32, BF16, F16); false for anything else. */
bool parse_safetensors_dtype(const std::string& s, DType* out);

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

/** Converts n elements from one storage dtype to another (through f32, one rounding). */
void convert_elements(const void* src, DType from, void* dst, DType to, size_t n);

}  // namespace md
