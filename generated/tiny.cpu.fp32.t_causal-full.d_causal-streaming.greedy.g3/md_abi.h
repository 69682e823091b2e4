// GENERATED from codegen/abi.ts by codegen/backends/header.ts; do not edit (`npm run regen` rewrites it).
// The kernel ABI of every magicdec module, independent of the module: status codes, the attention
// argument block, one function-pointer type per kernel kind, the kernel list, the manifest format.
// Conventions: see codegen/abi.ts and docs/ABI.md.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum md_status { MD_OK = 0, MD_ERR_ARG = 1, MD_ERR_LAUNCH = 2 } md_status;

// The layout version of manifest.json: modules embed it (md_module_manifest), the runtime reads no other.
#define MD_MANIFEST_FORMAT 1

// Exported (returning 1) only by a CUDA module built for the SIMT emulator: its device memory is host memory.
#define MD_EMULATED_SYMBOL "md_simt_emulated"

// The stream an emulated module is handed: its device's work queue. The module submits each launch, async
// copy, fill and stream-ordered allocation as op(arg); the queue runs it at once or, while the device
// captures work (the twin of a CUDA graph capture), records it to run at every replay, and calls drop(arg)
// after its last run. capturing(ctx) is nonzero while work is recorded. A null stream runs work at once.
#define MD_EMU_QUEUE_MAGIC 0x6d645175u
typedef struct md_emu_queue {
  uint32_t magic;  // MD_EMU_QUEUE_MAGIC
  void* ctx;
  void (*submit)(void* ctx, void (*op)(void*), void* arg, void (*drop)(void*));
  int (*capturing)(void* ctx);
} md_emu_queue;

typedef struct md_attn_args {
  const float* q;             // [rows, num_heads, head_dim], RoPE applied
  const void* k_cache;        // this layer's K pages, storage dtype
  const void* v_cache;        // this layer's V pages
  const int32_t* page_table;  // [slots, pages_per_seq]
  int32_t pages_per_seq;      // row stride of page_table
  const int32_t* row_seq;     // [rows] cache slot of each row
  const int32_t* row_pos;     // [rows] absolute position of each row's query
  const int32_t* seq_len;     // [slots] positions present in the cache for each slot
  int32_t rows;               // number of rows
  const float* params;        // the pass's runtime params, in manifest order (attention's, then the policy's)
  float* out;                 // [rows, num_heads, head_dim]
  float* workspace;           // md_attn_workspace_floats(rows) floats
  void* stream;               // cudaStream_t on CUDA; ignored on CPU
} md_attn_args;

// md_embed: x[r] = table[tokens[r]] (hidden_size wide), converted to fp32; a token outside [0, vocab) is MD_ERR_ARG on the CPU, a zero row on CUDA
//   table   [vocab, hidden] storage dtype
//   tokens  [rows]
//   x       [rows, hidden]
//   rows    number of rows
//   stream  cudaStream_t on CUDA; ignored on CPU
typedef int (*md_embed_fn)(const void* table, const int32_t* tokens, float* x, int32_t rows, void* stream);

// md_rmsnorm: y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w; the sum of squares runs in a fixed order per row
//   x       [rows, hidden]
//   w       [hidden] storage dtype
//   y       [rows, hidden]
//   rows    number of rows
//   stream  cudaStream_t on CUDA; ignored on CPU
typedef int (*md_rmsnorm_fn)(const float* x, const void* w, float* y, int32_t rows, void* stream);

// md_add_rmsnorm: resid[r] += delta[r]; y[r] = rmsnorm(resid[r]) * w (fused residual add)
//   resid   [rows, hidden], updated in place
//   delta   [rows, hidden]
//   w       [hidden] storage dtype
//   y       [rows, hidden]
//   rows    number of rows
//   stream  cudaStream_t on CUDA; ignored on CPU
typedef int (*md_add_rmsnorm_fn)(float* resid, const float* delta, const void* w, float* y, int32_t rows, void* stream);

// md_add: resid[r] += delta[r] (hidden wide)
//   resid   [rows, hidden], updated in place
//   delta   [rows, hidden]
//   rows    number of rows
//   stream  cudaStream_t on CUDA; ignored on CPU
typedef int (*md_add_fn)(float* resid, const float* delta, int32_t rows, void* stream);

// md_gemm_q_b<B>: y[r, n] = sum_k x[r, k] * w[n, k] (+ bias[n]) for the q projection; K is reduced in one fixed order per row, weights are read once per call for all rows
//   (same signature: md_gemm_kv_b<B>, md_gemm_o_b<B>, md_gemm_gate_up_b<B>, md_gemm_down_b<B>, md_gemm_lm_head_b<B>)
//   x       [rows, K]
//   w       [N, K] storage dtype
//   bias    [N] storage dtype, or NULL for none (optional for every projection)
//   y       [rows, N]
//   rows    number of rows
//   stream  cudaStream_t on CUDA; ignored on CPU
typedef int (*md_gemm_fn)(const float* x, const void* w, const void* bias, float* y, int32_t rows, void* stream);

// md_swiglu: out[r, i] = silu(gate[r, i]) * up[r, i] (intermediate_size wide), silu(x) = x / (1 + exp(-x))
//   gate    [rows, intermediate]
//   up      [rows, intermediate]
//   out     [rows, intermediate]
//   rows    number of rows
//   stream  cudaStream_t on CUDA; ignored on CPU
typedef int (*md_swiglu_fn)(const float* gate, const float* up, float* out, int32_t rows, void* stream);

// md_rope_append: rotate q and k in place (Llama rotate-half, with the model's rope scaling), then store k and v at (row_seq[r], row_pos[r]) in the paged cache in storage dtype
//   q              [rows, num_heads, head_dim], rotated in place
//   k              [rows, num_kv_heads, head_dim], rotated in place
//   v              [rows, num_kv_heads, head_dim]
//   k_cache        this layer's K pages
//   v_cache        this layer's V pages
//   page_table     [slots, pages_per_seq]
//   pages_per_seq  row stride of page_table
//   row_seq        [rows] cache slot
//   row_pos        [rows] absolute position
//   rows           number of rows
//   stream         cudaStream_t on CUDA; ignored on CPU
typedef int (*md_rope_append_fn)(float* q, float* k, const float* v, void* k_cache, void* v_cache, const int32_t* page_table, int32_t pages_per_seq, const int32_t* row_seq, const int32_t* row_pos, int32_t rows, void* stream);

// md_attn_target_b<B>: paged split-KV attention of the target pass (its mask, score and KV policy inlined, tiles skipped by interval analysis)
//   (same signature: md_attn_draft_b<B>)
//   args  see md_attn_args
typedef int (*md_attn_fn)(const md_attn_args* args);

// md_argmax: tokens[r] = argmax over vocab of logits[r] (lowest index wins ties; NaN never wins); with md_gemm_lm_head_b<B>, the unfused reference of md_lm_head_argmax_b<B>, which the engine calls instead
//   logits  [rows, vocab]
//   tokens  [rows]
//   rows    number of rows
//   stream  cudaStream_t on CUDA; ignored on CPU
typedef int (*md_argmax_fn)(const float* logits, int32_t* tokens, int32_t rows, void* stream);

// md_lm_head_argmax_b<B>: logits[r, n] = sum_k x[r, k] * w[n, k], bit-identical to md_gemm_lm_head_b<B> (bias NULL), and tokens[r] = md_argmax of that row, in one pass over the weights; with logits NULL only tokens are written. Partial argmaxes merge by a total order on (value, index), so no merge order, grid or thread count changes a token
//   x       [rows, hidden]
//   w       [vocab, hidden] storage dtype
//   logits  [rows, vocab], or NULL when only the tokens are wanted
//   tokens  [rows] greedy token of each row (lowest index wins ties; NaN never wins; a row of NaNs gives 0)
//   rows    number of rows
//   stream  cudaStream_t on CUDA; ignored on CPU
typedef int (*md_lm_head_argmax_fn)(const float* x, const void* w, float* logits, int32_t* tokens, int32_t rows, void* stream);

// md_sample: tokens[r] = the sample of logits[r] under row r's temperature, top_k, top_p and min_p, with Gumbel noise keyed by (seed, row_pos[r]); temperature 0 is md_argmax's token (docs/ABI.md, "Sampling"). Each row is computed from its own inputs in a fixed order
//   logits       [rows, vocab]
//   temperature  [rows] finite, >= 0; 0: greedy
//   top_k        [rows] >= 0: keep the top_k highest-ranked tokens; 0 keeps all
//   top_p        [rows] in (0, 1]: keep the shortest top-ranked run holding top_p of the weight; 1 keeps all
//   min_p        [rows] in [0, 1]: keep tokens of weight >= min_p times the top token's; 0 keeps all
//   seed         [rows, 2] the request's 64-bit seed: low word, high word
//   row_pos      [rows] absolute position of the row (the noise counter; its token goes to position + 1)
//   tokens       [rows]
//   rows         number of rows
//   stream       cudaStream_t on CUDA; ignored on CPU
typedef int (*md_sample_fn)(const float* logits, const float* temperature, const int32_t* top_k, const float* top_p, const float* min_p, const uint32_t* seed, const int32_t* row_pos, int32_t* tokens, int32_t rows, void* stream);

// md_verify_sample: speculative sampling per sequence b (docs/ABI.md, "Speculative sampling"): drafted token j (a sample of draft row j) is accepted while md_verify_accept(p, q, u, h) holds for its target and draft probabilities, the uniform of (seed, row_pos + j) and the entropy of the target row's distribution; at the first rejection next[b] is drawn from md_verify_residual over the vocabulary (from the target's distribution if that is all zero); after gamma acceptances next[b] is the target's sample at the last row. The rule is the module's 'sample' verifier's, or the standard one
//   target_logits  [batch, gamma + 1, vocab] the verified rows' logits
//   draft_logits   [batch, gamma, vocab] the drafted rows' logits
//   draft_tokens   [batch, gamma] drafted tokens, each in [0, vocab)
//   temperature    [batch] as md_sample
//   top_k          [batch] as md_sample
//   top_p          [batch] as md_sample
//   min_p          [batch] as md_sample
//   seed           [batch, 2] as md_sample
//   row_pos        [batch] absolute position of each sequence's first verified row
//   accepted       [batch] in 0..gamma
//   next           [batch] the token after the accepted ones
//   gamma          drafted tokens per sequence, 1..the module gamma
//   batch          number of sequences
//   stream         cudaStream_t on CUDA; ignored on CPU
typedef int (*md_verify_sample_fn)(const float* target_logits, const float* draft_logits, const int32_t* draft_tokens, const float* temperature, const int32_t* top_k, const float* top_p, const float* min_p, const uint32_t* seed, const int32_t* row_pos, int32_t* accepted, int32_t* next, int32_t gamma, int32_t batch, void* stream);

// md_verify_greedy: per sequence b: accepted[b] = number of leading drafted tokens equal to the target argmax before them; next[b] = target argmax after the accepted prefix
//   target_tokens  [batch, gamma + 1] target argmax at each verified row
//   draft_tokens   [batch, gamma] drafted tokens
//   accepted       [batch] in 0..gamma
//   next           [batch] the bonus/correction token
//   batch          number of sequences
//   stream         cudaStream_t on CUDA; ignored on CPU
typedef int (*md_verify_greedy_fn)(const int32_t* target_tokens, const int32_t* draft_tokens, int32_t* accepted, int32_t* next, int32_t batch, void* stream);

// md_attn_workspace_floats: workspace md_attn_* needs for `rows` rows
typedef size_t (*md_attn_workspace_floats_fn)(int32_t rows);

// md_module_manifest: the manifest.json text, for the loader's check
typedef const char* (*md_module_manifest_fn)(void);

// md_status_string: a readable name of a status code
typedef const char* (*md_status_string_fn)(int32_t status);

// The kernel list as X-macros over X(name, kind): md_<name> is an entry point of type md_<kind>_fn, and
// MD_BUCKET_KERNELS' are instantiated once per batch bucket as md_<name>_b<B>. The runtime builds its
// kernel table by walking them, so a kernel is declared once: in codegen/abi.ts.
#define MD_SHARED_KERNELS(X)      \
  X(embed, embed)                 \
  X(rmsnorm, rmsnorm)             \
  X(add_rmsnorm, add_rmsnorm)     \
  X(add, add)                     \
  X(swiglu, swiglu)               \
  X(rope_append, rope_append)     \
  X(argmax, argmax)               \
  X(sample, sample)               \
  X(verify_sample, verify_sample) \
  X(verify_greedy, verify_greedy)
#define MD_BUCKET_KERNELS(X)        \
  X(gemm_q, gemm)                   \
  X(gemm_kv, gemm)                  \
  X(gemm_o, gemm)                   \
  X(gemm_gate_up, gemm)             \
  X(gemm_down, gemm)                \
  X(gemm_lm_head, gemm)             \
  X(attn_target, attn)              \
  X(attn_draft, attn)               \
  X(lm_head_argmax, lm_head_argmax)

// The module's other exports, as X(name): md_<name> of type md_<name>_fn.
#define MD_MODULE_EXTRAS(X) \
  X(attn_workspace_floats)  \
  X(module_manifest)        \
  X(status_string)

#ifdef __cplusplus
}  // extern "C"
#endif
