/* magicdec runtime C API: embed a speculative-decoding engine that runs a module built by
 * `magicdec gen --build` on a Hugging Face Llama-family model directory.
 *
 * Errors: functions return NULL or a negative value and set a thread-local message, read with
 * md_last_error(). No C++ exception crosses this interface. One engine is not thread-safe except that
 * md_engine_add_request and md_engine_cancel may be called while another thread runs md_engine_step.
 * CPU modules' kernels run on an OpenMP team of the thread that calls md_engine_step (OMP_NUM_THREADS
 * threads); step an engine from one thread, not from a pool's changing workers, or each of them keeps a
 * team of its own on the same cores and every kernel call pays for waking one.
 */
#ifndef MAGICDEC_H
#define MAGICDEC_H

#include <stddef.h>
#include <stdint.h>

#if defined(MD_BUILDING_CAPI) && defined(__GNUC__)
#define MD_API __attribute__((visibility("default")))
#else
#define MD_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_engine md_engine;

enum md_mode { MD_MODE_AR = 0, MD_MODE_SPEC = 1 };

/** md_engine_options.gamma / md_engine_set_gamma: the engine picks 1..module gamma per round, from measured
 *  draft and verification times and its running estimate of the per-token acceptance. */
#define MD_GAMMA_AUTO (-1)
/* md_engine_set_gamma: a speculative engine decodes autoregressively (no draft) until gamma is set again. */
#define MD_GAMMA_OFF (-2)

typedef struct md_engine_options {
  int32_t max_batch;     /* live sequences at once; 0 = the module's largest batch bucket */
  int32_t kv_pages;      /* KV-cache pages in the pool; 0 = enough for max_batch sequences of maxSeq */
  int32_t mode;          /* MD_MODE_AR or MD_MODE_SPEC */
  int32_t gamma;         /* drafted tokens per round, 1..module gamma, MD_GAMMA_AUTO or MD_GAMMA_OFF; 0 = the
                            module's (its gamma, or MD_GAMMA_AUTO for a module built with gamma 'auto') */
  int32_t prefill_chunk; /* rows per prefill step; 0 = the largest bucket's row limit */
  int32_t keep_logits;   /* non-zero: keep the logits of every emitted token (md_request_logits) */
  int32_t step_tokens;   /* target rows per step: the decode round's, then prefill rows in the rest (see
                            md_engine_step); at least max_batch * (gamma + 1) (max_batch in AR mode);
                            0 = the largest bucket's row limit */
  int32_t prefill_first; /* non-zero: no decode round while a prompt is prefilling, so that every round
                            decodes the whole batch (offline batch jobs, benchmarks); 0: rounds every step */
  int32_t eager;         /* non-zero: never capture the draft's steps as device graphs (like vLLM's
                            enforce_eager); the same tokens and logits */
} md_engine_options;

/* Sampling (md_request_options): a token is the Gumbel-max draw from the row's logits divided by the
 * temperature, after top-k, then top-p, then min-p, with Philox noise keyed by (seed, position): the same
 * request with the same seed gives the same tokens in any batch, autoregressive or speculative. A speculative
 * engine samples only with a module whose verifier samples; greedy modules refuse temperature > 0 there. */
typedef struct md_request_options {
  int32_t max_tokens;          /* >= 1 */
  const int32_t* stop_tokens;  /* may be NULL */
  int32_t num_stop_tokens;
  int32_t ignore_eos;          /* non-zero: do not stop at the model's eos_token_id */
  float temperature;           /* finite, >= 0; 0 (default): greedy */
  int32_t top_k;               /* >= 0: keep the top_k most likely tokens; 0 (default): all */
  float top_p;                 /* (0, 1]: keep the most likely tokens holding top_p of the mass; 1 (default): all */
  float min_p;                 /* [0, 1]: keep tokens at least min_p times as likely as the top one; 0 (default): all */
  int32_t has_seed;            /* non-zero: `seed` is the request's seed; 0 (default): the engine draws one */
  uint64_t seed;               /* any 64-bit value; read back with md_request_seed */
  int32_t keep_logits;         /* non-zero: keep this request's logits (md_request_logits) also when the
                                  engine was created without keep_logits; others pay nothing for it */
} md_request_options;

enum md_request_state { MD_REQ_QUEUED = 0, MD_REQ_PREFILL = 1, MD_REQ_DECODE = 2, MD_REQ_DONE = 3, MD_REQ_FAILED = 4 };
enum md_finish_reason { MD_FINISH_NONE = 0, MD_FINISH_STOP = 1, MD_FINISH_LENGTH = 2, MD_FINISH_ERROR = 3, MD_FINISH_CANCELLED = 4 };

typedef struct md_request_stats {
  int32_t state;          /* md_request_state */
  int32_t finish_reason;  /* md_finish_reason */
  int32_t prompt_tokens;
  int32_t generated;
  int32_t rounds;         /* speculative rounds */
  int32_t drafted;
  int32_t accepted;
  double acceptance;       /* accepted / drafted */
  double tokens_per_round; /* (accepted + rounds) / rounds */
  double prefill_s, draft_s, verify_s, decode_s;
} md_request_stats;

typedef struct md_engine_stats {
  int64_t steps, prefill_steps, rounds, ar_steps;
  int64_t prefill_tokens, generated, drafted, accepted;
  double acceptance;
  double prefill_s, draft_s, verify_s, decode_s;
  int32_t free_pages;
  int32_t live_requests;
  int32_t gamma;      /* gamma of later rounds: 1..module gamma, MD_GAMMA_AUTO or MD_GAMMA_OFF */
  double mean_gamma;  /* mean tokens drafted per speculative round so far (0 before the first) */
  /* speculative rounds whose draft steps were captured as a device graph, and rounds that replayed one
     (md_engine_info's "draftGraphs" says whether they are captured, and why not) */
  int64_t graph_captures, graph_replays;
} md_engine_stats;

/** The message of the latest failed call on this thread ("" if none). Valid until the next failing call. */
MD_API const char* md_last_error(void);

MD_API void md_engine_options_default(md_engine_options* opts);
MD_API void md_request_options_default(md_request_options* opts);

/** Loads module and model and checks them against each other; NULL on error. opts may be NULL. */
MD_API md_engine* md_engine_create(const char* model_dir, const char* module_path, const md_engine_options* opts);
MD_API void md_engine_destroy(md_engine* engine);

/** JSON summary of model, module, params and options; owned by the engine, valid until the next call. */
MD_API const char* md_engine_info(md_engine* engine);

/** Sets a pass's runtime param ("target"/"draft", manifest key such as "kv_window"). 0 or -1. */
MD_API int md_engine_set_param(md_engine* engine, const char* pass, const char* key, float value);

/** Sets the gamma of later rounds: 1..module gamma, MD_GAMMA_AUTO or MD_GAMMA_OFF. 0 or -1. */
MD_API int md_engine_set_gamma(md_engine* engine, int32_t gamma);

/** Rounds per gamma so far: out[g] = speculative rounds that drafted g tokens, for g < cap. Returns the
 *  module's gamma + 1 (the length of the whole histogram; out[0] is always 0), or -1. */
MD_API int32_t md_engine_gamma_rounds(md_engine* engine, int64_t* out, int32_t cap);

/** Step kinds and kernel classes of md_engine_kernel_times. */
enum md_step_kind { MD_STEP_PREFILL = 0, MD_STEP_AR = 1, MD_STEP_DRAFT = 2, MD_STEP_VERIFY = 3, MD_STEP_KINDS = 4 };
enum md_kernel_class { MD_KERNEL_ATTENTION = 0, MD_KERNEL_GEMM = 1, MD_KERNEL_NORM_ROPE = 2, MD_KERNEL_OTHER = 3, MD_KERNEL_CLASSES = 4 };

/** Seconds spent inside module kernels so far, by step kind and kernel class:
 *  out[kind * MD_KERNEL_CLASSES + class] for indices < cap. Attention; GEMMs (q/k/v, o, gate/up, down, LM
 *  head + argmax); RMSNorm (also fused with the residual add) and RoPE + KV append; other (embedding,
 *  SwiGLU, residual add, greedy verification, LM-row gather). The rest of a step's time is the host's.
 *  Returns MD_STEP_KINDS * MD_KERNEL_CLASSES, or -1. */
MD_API int32_t md_engine_kernel_times(md_engine* engine, double* out, int32_t cap);

/** Queues a request; returns its id (> 0) or -1 (a bad prompt or option: nothing queued). opts may be NULL
 *  (defaults); options not from md_request_options_default must set top_p (0 is invalid). */
MD_API int64_t md_engine_add_request(md_engine* engine, const int32_t* prompt, int32_t prompt_len, const md_request_options* opts);

/** Runs one step: applies cancellations, admits queued requests (FIFO, while a slot is free and all the KV
 *  pages a request can touch, prompt + max_tokens + the module's gamma when speculative, can be reserved;
 *  otherwise it waits), runs a decode round over every request decoding at the start of the step, then a
 *  prefill chunk of at most min(prefill_chunk, step_tokens - the round's rows) prompt rows. So a decoding
 *  request gets tokens in every step however long the prompts beside it, and every prompt in a slot
 *  advances every step (step_tokens covers a full round). Returns the number of live (queued or running)
 *  requests, or -1 if a request failed in this step: a failing kernel fails exactly the requests with rows
 *  in that forward pass (MD_REQ_FAILED, md_request_error); md_last_error names the first. Other requests
 *  and the engine go on: keep stepping while md_engine_stats_get reports live requests. */
MD_API int md_engine_step(md_engine* engine);

/** Cancels a request at the next md_engine_step: a queued one leaves the queue, a running one frees its
 *  sequence slot and KV pages; it ends MD_REQ_DONE with MD_FINISH_CANCELLED, keeping the tokens it has
 *  (release it with md_request_release). Cancelling a finished or released request does nothing. May be
 *  called while another thread runs md_engine_step. Returns 0, or -1 for an id this engine never issued. */
MD_API int md_engine_cancel(md_engine* engine, int64_t id);

/** Steps until no request is live, also past failed requests. Returns 0 if none failed, else -1 with the
 *  first failure (and how many requests failed) in md_last_error. */
MD_API int md_engine_run(md_engine* engine);

/** Copies up to cap generated tokens of a request into out; returns how many it has, or -1. */
MD_API int32_t md_request_tokens(md_engine* engine, int64_t id, int32_t* out, int32_t cap);

/** Copies the logits (vocab floats) of generated token `index` into out (cap >= vocab); returns vocab or -1.
 *  Needs keep_logits: the engine's (md_engine_options) or the request's (md_request_options). */
MD_API int32_t md_request_logits(md_engine* engine, int64_t id, int32_t index, float* out, int32_t cap);

/** The request's seed (given, or drawn by the engine: then below 2^53) into *out; 0 or -1. */
MD_API int md_request_seed(md_engine* engine, int64_t id, uint64_t* out);

/** The request's error message ("" unless MD_REQ_FAILED), or NULL for an unknown id. */
MD_API const char* md_request_error(md_engine* engine, int64_t id);

MD_API int md_request_stats_get(md_engine* engine, int64_t id, md_request_stats* out);
MD_API int md_engine_stats_get(md_engine* engine, md_engine_stats* out);

/** Forgets a finished request (its tokens and logits). 0, or -1 if unknown or still live. */
MD_API int md_request_release(md_engine* engine, int64_t id);

/** Loads and validates a model directory (config.json + safetensors) without a module; dtype is
 *  "bf16" | "fp16" | "fp32". Returns 0, or -1 with the problem in md_last_error(). */
MD_API int md_model_check(const char* model_dir, const char* dtype);

/** Whether this runtime can run CUDA (sm_80 / sm_90) modules on a GPU here: 1, or 0 with the reason in
 *  md_last_error() (built without -DMAGICDEC_CUDA=ON, no GPU, driver too old). CPU modules, and CUDA modules
 *  built for the SIMT emulator, run either way. */
MD_API int md_cuda_available(void);

#ifdef __cplusplus
}
#endif

#endif /* MAGICDEC_H */
