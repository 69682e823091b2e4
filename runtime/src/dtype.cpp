#include "dtype.h"

#include <cmath>

namespace md {

const char* dtype_safetensors_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
  }
  return "?";
}

const char* dtype_manifest_name(DType t) {
  switch (t) {
    case DType::F32: return "fp32";
    case DType::BF16: return "bf16";
    case DType::F16: return "fp16";
  }
  return "?";
}

bool parse_storage_dtype(const std::string& s, DType* out) {
  for (DType t : {DType::F32, DType::BF16, DType::F16})
    if (s == dtype_manifest_name(t)) {
      *out = t;
      return true;
    }
  return false;
}

bool parse_safetensors_dtype(const std::string& s, DType* out) {
  for (DType t : {DType::F32, DType::BF16, DType::F16})
    if (s == dtype_safetensors_name(t)) {
      *out = t;
      return true;
    }
  return false;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13));  // inf / NaN
  if (exp == 0) {
    // Subnormal (or zero): value = man * 2^-24, exact in f32.
    float v = std::ldexp(float(man), -24);
    return sign ? -v : v;
  }
  return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f) {
  uint32_t u = f32_to_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));  // NaN: quiet, top payload bits kept
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {
    // Below the smallest normal: round abs * 2^24 to an integer, nearest even.
    float scaled = std::ldexp(bits_to_f32(abs), 24);
    float r = std::nearbyint(scaled);  // default rounding mode: nearest even
    return uint16_t(sign | uint16_t(r));
  }
  uint32_t exp = (abs >> 23) - 112;
  uint32_t man = abs & 0x7fffffu;
  uint32_t h = (exp << 10) | (man >> 13);
  uint32_t rest = man & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h += 1;  // carries into the exponent correctly
  return uint16_t(sign | h);
}

static float load(const void* src, DType t, size_t i) {
  switch (t) {
    case DType::F32: {
      float f;
      std::memcpy(&f, static_cast<const char*>(src) + 4 * i, 4);
      return f;
    }
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, static_cast<const char*>(src) + 2 * i, 2);
      return bf16_to_f32(h);
    }
    case DType::F16: {
      uint16_t h;
      std::memcpy(&h, static_cast<const char*>(src) + 2 * i, 2);
      return f16_to_f32(h);
    }
  }
  return 0;
}

void convert_elements(const void* src, DType from, void* dst, DType to, size_t n) {
  char* d = static_cast<char*>(dst);
  for (size_t i = 0; i < n; ++i) {
    float v = load(src, from, i);
    if (to == DType::F32) {
      std::memcpy(d + 4 * i, &v, 4);
    } else {
      uint16_t h = to == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
      std::memcpy(d + 2 * i, &h, 2);
    }
  }
}

}  // namespace md
