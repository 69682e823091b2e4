// md_argmax's preference as one integer, shared by both backends' md_lm_head_argmax: (value, index)
// packed so that unsigned order is md_argmax's order (larger value, then lower index; -0 ranks as +0
// because md_argmax compares with ==; NaN is 0, below every candidate). The order is total, so partial
// maxima merge to the same key in any grouping or order (threads, blocks, atomicMax over CTAs).
#pragma once
#include <stdint.h>

#include "md_expr.h"

MD_FN uint64_t md_argmax_key(float v, int32_t index) {
  if (v != v) return 0;
  const uint32_t u = md_f32_bits(v == 0.0f ? 0.0f : v);
  const uint32_t ord = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // monotone in v; >= 0x007fffff for -inf
  return ((uint64_t)ord << 32) | (uint64_t)(0xffffffffu - (uint32_t)index);
}

/** The value a key was made from, as the order sees it (-0 as +0); -inf for the empty key. */
MD_FN float md_argmax_key_value(uint64_t key) {
  const uint32_t ord = (uint32_t)(key >> 32);
  if (ord == 0) return -INFINITY;
  return md_bits_f32(ord & 0x80000000u ? ord & 0x7fffffffu : ~ord);
}

/** The index a key stands for; 0 for the empty key (a row of NaNs), as md_argmax. */
MD_FN int32_t md_argmax_key_index(uint64_t key) { return key ? (int32_t)(0xffffffffu - (uint32_t)key) : 0; }
