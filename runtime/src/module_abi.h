// The runtime's side of the kernel ABI (codegen/abi.ts is the source of truth; test/runtime checks that
// the symbols and argument lists below match KERNELS there). Function pointer types of each entry point.
#pragma once
#include <cstddef>
#include <cstdint>

extern "C" {

typedef struct md_attn_args {
  const float* q;
  const void* k_cache;
  const void* v_cache;
  const int32_t* page_table;
  int32_t pages_per_seq;
  const int32_t* row_seq;
  const int32_t* row_pos;
  const int32_t* seq_len;
  int32_t rows;
  const float* params;
  float* out;
  float* workspace;
  void* stream;
} md_attn_args;

typedef int (*md_embed_fn)(const void* table, const int32_t* tokens, float* x, int32_t rows, void* stream);
typedef int (*md_rmsnorm_fn)(const float* x, const void* w, float* y, int32_t rows, void* stream);
typedef int (*md_add_rmsnorm_fn)(float* resid, const float* delta, const void* w, float* y, int32_t rows, void* stream);
typedef int (*md_add_fn)(float* resid, const float* delta, int32_t rows, void* stream);
typedef int (*md_gemm_fn)(const float* x, const void* w, const void* bias, float* y, int32_t rows, void* stream);
typedef int (*md_swiglu_fn)(const float* gate, const float* up, float* out, int32_t rows, void* stream);
typedef int (*md_rope_append_fn)(float* q, float* k, const float* v, void* k_cache, void* v_cache,
                                 const int32_t* page_table, int32_t pages_per_seq, const int32_t* row_seq,
                                 const int32_t* row_pos, int32_t rows, void* stream);
typedef int (*md_attn_fn)(const md_attn_args* args);
typedef int (*md_argmax_fn)(const float* logits, int32_t* tokens, int32_t rows, void* stream);
typedef int (*md_verify_greedy_fn)(const int32_t* target_tokens, const int32_t* draft_tokens, int32_t* accepted,
                                   int32_t* next, int32_t batch, void* stream);
typedef size_t (*md_attn_workspace_floats_fn)(int32_t rows);
typedef const char* (*md_module_manifest_fn)(void);
typedef const char* (*md_status_string_fn)(int status);
}
