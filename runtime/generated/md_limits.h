// Generated from codegen/limits.ts by `npm run regen`; do not edit (test/runtime/limits-header.test.ts
// compares it with the rendering). The rules that use these numbers: docs/MODEL-FILES.md.
#pragma once
#include <cstdint>

namespace md::limits {

struct ConfigIntLimit {
  const char* field;  // as written in config.json; nested fields as parent.child
  int64_t max;        // the smallest is 1
};

inline constexpr ConfigIntLimit kConfigInt[] = {
    {"hidden_size", 65536},
    {"intermediate_size", 262144},
    {"num_hidden_layers", 1024},
    {"num_attention_heads", 1024},
    {"num_key_value_heads", 1024},
    {"head_dim", 1024},
    {"vocab_size", 1048576},
    {"max_position_embeddings", 1073741824},
    {"sliding_window", 1073741824},
    {"rope_scaling.original_max_position_embeddings", 1073741824},
};

inline constexpr int kMaxEosTokenIds = 4;
inline constexpr int kMaxJsonDepth = 64;
inline constexpr int64_t kMaxJsonFileBytes = 67108864;

}  // namespace md::limits
