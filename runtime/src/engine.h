// The decoding engine: requests in slots, chunked prefill, autoregressive decode and self-speculative decode
// (draft gamma tokens through the draft pass's sparse KV policy, verify gamma+1 rows per sequence with the
// target pass, accept while the drafted token equals the target's — its argmax, or with a 'match' verifier
// its sample under the request's seeded noise; with a 'sample' verifier, sampling requests go through the
// module's rejection rule (md_verify_sample) instead — advance each sequence by its own count, roll back by
// moving a length).
// Weights, the KV cache and activations live in the module's device's memory (device.h): the host uploads
// each pass's rows and reads back only the LM rows' tokens (and their logits when kept), once per pass; a
// speculative round reads back once, after verification: accepted lengths, next and drafted tokens.
// The Llama forward is a fixed sequence of module kernels, so a row's logits depend only on its position
// and its prefix (docs/ARCHITECTURE.md, invariant 1): speculative output equals autoregressive output bit for bit.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "device.h"
#include "gamma.h"
#include "kv_cache.h"
#include "module.h"
#include "weights.h"

namespace md {

enum class Mode { AR, Spec };

/** EngineOptions::gamma / set_gamma: pick gamma per round (GammaTuner), at most the module's gamma. */
constexpr int kGammaAuto = -1;
/**
 * set_gamma: a speculative engine decodes autoregressively (one target row per sequence, no draft) until
 * gamma is set again, e.g. where speculation does not pay, or to time both on one cache. Lossless either way.
 */
constexpr int kGammaOff = -2;

struct EngineOptions {
  int max_batch = 0;       // live sequences at once; 0 = the module's largest bucket
  int kv_pages = 0;        // pages in the pool; 0 = enough for max_batch sequences of maxSeq
  Mode mode = Mode::Spec;
  int gamma = 0;           // drafted tokens per round, 1..module gamma; kGammaAuto: chosen per round;
                           // 0 = the module's (its gamma, or kGammaAuto for a module built with gamma 'auto')
  int prefill_chunk = 0;   // rows per prefill step; 0 = the largest bucket's row limit
  int step_tokens = 0;     // target rows per step, decode round first, prefill in the rest (see Engine::step);
                           // at least a full decode round (max_batch * (gamma + 1), max_batch in AR);
                           // 0 = the largest bucket's row limit
  bool keep_logits = false;  // keep the logits of every emitted token (vocab floats each)
  bool prefill_first = false;  // offline batches: no decode round while a prompt is prefilling, so every
                               // round decodes the whole batch (see Engine::step)
  bool eager = false;  // never capture the draft's steps as device graphs (like vLLM's enforce_eager):
                       // every launch is queued as it comes; the same tokens and logits
};

/** How a request's tokens are drawn (md_sample, docs/ABI.md "Sampling"); the defaults are greedy. */
struct SamplingParams {
  float temperature = 0;  // finite, >= 0; 0: greedy (the argmax)
  int32_t top_k = 0;      // >= 0; 0 keeps every token
  float top_p = 1;        // (0, 1]; 1 keeps every token
  float min_p = 0;        // [0, 1]; 0 keeps every token
  bool greedy() const { return temperature == 0; }
};

struct RequestOptions {
  int max_tokens = 16;
  std::vector<int32_t> stop_tokens;
  bool ignore_eos = false;
  SamplingParams sampling;
  /** The seed of the request's noise (Philox key); without one the engine draws one (Request::seed). */
  bool has_seed = false;
  uint64_t seed = 0;
  /** Keep this request's logits (vocab floats per emitted token), as EngineOptions::keep_logits does for
   *  all; requests without it pay nothing for it (no LM-head logits writes, no copies). */
  bool keep_logits = false;
};

enum class RequestState { Queued, Prefill, Decode, Done, Failed };
enum class FinishReason { None, Stop, Length, Error, Cancelled };

const char* finish_reason_name(FinishReason r);

struct RequestStats {
  int prompt_tokens = 0;
  int generated = 0;
  int rounds = 0;    // speculative rounds
  int drafted = 0;   // tokens drafted (gamma per round)
  int accepted = 0;  // drafted tokens the target accepted
  double prefill_s = 0, draft_s = 0, verify_s = 0, decode_s = 0;
  double acceptance() const { return drafted ? double(accepted) / drafted : 0; }
  /** Tokens emitted per speculative round (accepted + 1, before truncation at stop/length). */
  double tokens_per_round() const { return rounds ? double(accepted + rounds) / rounds : 0; }
};

/** The kinds of forward pass and the kernel classes of EngineStats::kernel_s (the C API's MD_STEP_* / MD_KERNEL_*). */
enum class StepKind { Prefill = 0, Ar = 1, Draft = 2, Verify = 3 };
enum class KernelClass { Attention = 0, Gemm = 1, NormRope = 2, Other = 3 };
constexpr int kStepKinds = 4;
constexpr int kKernelClasses = 4;

struct EngineStats {
  int64_t steps = 0, prefill_steps = 0, rounds = 0, ar_steps = 0;
  int64_t prefill_tokens = 0, generated = 0, drafted = 0, accepted = 0;
  double prefill_s = 0, draft_s = 0, verify_s = 0, decode_s = 0;
  /** Histogram of the bucket used by decode rounds: bucket -> rounds. */
  std::map<int, int64_t> bucket_rounds;
  /** Histogram of the gamma drafted by speculative rounds: gamma -> rounds. */
  std::map<int, int64_t> gamma_rounds;
  /** Speculative rounds whose draft steps were captured as a device graph, and rounds that replayed one. */
  int64_t graph_captures = 0, graph_replays = 0;
  /** Mean gamma over the speculative rounds (0 before the first). */
  double mean_gamma() const;
  /**
   * Wall time inside module kernels by step kind and kernel class, seconds: attention; the GEMMs (q/k/v,
   * o, gate/up, down, the LM head with its argmax); RMSNorm (also fused with the residual add) and RoPE
   * with the KV append; everything else (embedding, SwiGLU, residual add, greedy verification, gathering
   * the LM rows). Read from steady_clock around each call; the rest of a step is the host's scheduling.
   * On a CUDA device calls only queue work on the stream, so these are launch times (and a speculative
   * round's draft steps, replayed as a captured graph, add theirs only when captured); the phase times are
   * the device's: a round's draft_s and verify_s between Device::mark events, prefill_s and decode_s from a
   * step's start to its wait for the device.
   */
  double kernel_s[kStepKinds][kKernelClasses] = {};
};

/** What one step produced for one request. */
struct StepEvent {
  int64_t id = 0;
  std::vector<int32_t> tokens;  // newly emitted
  std::vector<float> logits;    // their logits (keep_logits, the engine's or the request's), tokens.size() * vocab
  bool finished = false;
  FinishReason reason = FinishReason::None;
  std::string error;
};

struct Request {
  int64_t id = 0;
  std::vector<int32_t> prompt;
  RequestOptions opts;
  uint64_t seed = 0;       // opts.seed, or the one the engine drew (below 2^53, so JavaScript holds it exactly)
  RequestState state = RequestState::Queued;
  FinishReason reason = FinishReason::None;
  std::string error;
  int slot = -1;
  int prefilled = 0;       // prompt positions already in the cache
  int64_t cache_len = 0;   // positions whose target K/V is in the cache
  int32_t pending = -1;    // last emitted token, not yet in the cache
  std::vector<int32_t> output;
  std::vector<float> logits;
  size_t delivered = 0;    // output tokens already reported in a StepEvent
  RequestStats stats;
};

class Engine {
 public:
  /** Loads the module, then the model in the module's dtype, checks one against the other, sizes the cache. */
  Engine(const std::string& model_dir, const std::string& module_path, const EngineOptions& opts);
  ~Engine();

  /**
   * Validates and queues a request; safe to call while another thread runs step(). Throws md::Error, before
   * any work, for a bad prompt, length, stop token or sampling parameter, and for a sampling request
   * (temperature > 0) on a speculative engine whose module verifies greedily.
   */
  int64_t add_request(const std::vector<int32_t>& prompt, const RequestOptions& opts);
  /**
   * Runs one step and returns what each request got: a decode round (AR or speculative) over every request
   * that was decoding when the step began, then a prefill chunk in what is left of the step's token budget.
   *
   * Scheduling: each step first applies cancellations (cancel()), then admits queued requests in FIFO order
   * while a slot is free and their KV pages can be reserved. The decode round takes n rows in AR and
   * n * (gamma + 1) verification rows when speculative; the prefill chunk takes
   * min(prefill_chunk, step_tokens - those rows) prompt rows, requests in slot order. A decoding request
   * therefore gets a round in every step however long the prompts next to it (inter-token latency is bounded
   * by one round plus at most a step_tokens-row chunk), and since step_tokens covers a full decode round
   * (checked at creation), a prompt in a slot leaves at least gamma + 1 rows (1 in AR) for prefill: every
   * prompt advances every step. Slots freed by the round are refilled before the chunk. The two never share
   * a forward pass; a request whose prompt completes in a step decodes from the next one.
   *
   * With EngineOptions::prefill_first (offline batch jobs and benchmarks, which want every round to decode
   * the whole batch at its full context), a step with a prompt in a slot runs no decode round: its whole
   * budget goes to prefill. Decoding requests then wait for every admitted prompt; tokens are the same
   * either way (row invariance), only the schedule differs.
   *
   * Failures: a failing kernel fails exactly the requests with rows in that forward pass (the chunk's
   * prefilling requests, or the round's decoding batch); their events carry the error. Requests outside
   * the pass, queued requests and the engine go on (the other pass of the step still runs).
   */
  std::vector<StepEvent> step();
  /**
   * Cancels a request at the start of the next step: a queued request leaves the queue, a running one frees
   * its slot and KV pages; its event then reports it finished with FinishReason::Cancelled and the tokens
   * not yet reported. A request already finished (or released) is left as it is. Safe to call while another
   * thread runs step(). False only for an id this engine never issued.
   */
  bool cancel(int64_t id);
  /** Requests queued or running. */
  int live() const;
  /** Requests waiting for admission (a free slot and their KV pages). */
  int queued() const;

  const Request* request(int64_t id) const;
  /** Forgets a finished request; false if it is unknown or still live. */
  bool release(int64_t id);

  /** Sets a pass's runtime param (by manifest key, e.g. kv_window) for later steps. */
  void set_param(const std::string& pass, const std::string& key, float value);
  /** Sets the gamma of later rounds: 1..the module's gamma, kGammaAuto or kGammaOff. */
  void set_gamma(int gamma);

  const ModelConfig& config() const { return weights_->config(); }
  const Module& module() const { return *module_; }
  const EngineOptions& options() const { return opts_; }
  /** Whether r's logits are kept: the engine's keep_logits or the request's. */
  bool keeps_logits(const Request& r) const { return opts_.keep_logits || r.opts.keep_logits; }
  /** The gamma of later rounds (kGammaAuto when the engine chooses per round). */
  int gamma() const { return gamma_; }
  const GammaTuner& gamma_tuner() const { return tuner_; }
  const EngineStats& stats() const { return stats_; }
  int free_pages() const { return cache_->free_pages(); }
  /** JSON summary of the model, module and options. */
  std::string info_json() const;

 private:
  struct Rows;
  /** Moves added requests to the queue; a request whose buffers cannot be allocated fails (into `failed`). */
  void drain_incoming(std::vector<Request*>& failed);
  /** Applies the cancellations cancel() recorded; appends the requests it finished to `done`. */
  void apply_cancels(std::vector<Request*>& done);
  /** Admits queued requests into free slots while their pages can be reserved; appends them to `admitted`. */
  void admit(std::vector<Request*>& admitted);
  /** Runs `pass`; if it throws, fails the requests in in_pass_ (and only those). */
  template <class F> void isolated(F&& pass);
  /** One prefill chunk of up to `rows` rows; false if no request is prefilling. */
  bool prefill_step(int rows);
  /** One decode round over the decoding requests; *rows gets its target rows (0 without one). */
  void decode_round(int* rows);
  void ar_round(std::vector<Request*>& batch);
  void spec_round(std::vector<Request*>& batch, int* rows);
  /**
   * Runs the model on `rows`; for rows[lm_rows[i]] writes the greedy token into argmax_[i] and, when the
   * logits are kept (keep_logits, target pass), the logits into logits_[i] (one fused LM head + argmax).
   * lm_reqs[i] is the request of LM row i: where one samples, argmax_[i] is its sample instead (sample()).
   * Results stay on the device (d_argmax_, logits_) until read_back. With tokens_on_device the rows' tokens
   * are already in d_tokens_ (the caller queued them there); otherwise rows.token is uploaded. With
   * rows_on_device the rows' slots, positions and sequence lengths are already in d_row_seq_, d_row_pos_ and
   * d_seq_len_, and the pass params and page table are current (sync_pass_inputs): the pass then queues no
   * upload unless a row samples.
   */
  void forward(const Rows& rows, StepKind kind, const std::vector<int>& lm_rows, const std::vector<Request*>& lm_reqs,
               bool tokens_on_device = false, bool rows_on_device = false);
  /** Each slot's sequence length as `rows` reach (its last position + 1; 0 for slots without rows) into len[max_batch]; returns how many slots have rows. */
  int lengths_of(const Rows& rows, int32_t* len) const;
  /** Uploads the passes' params if set_param changed them, and the page table if admission changed it. */
  void sync_pass_inputs();
  /** Whether greedy rounds' draft steps run as device graphs: the device captures, the engine is not eager, no capture failed. */
  bool captures_drafts() const { return device_->can_capture() && !opts_.eager && graphs_off_.empty(); }
  /** The draft's gamma steps of a speculative round (see spec_round), captured and replayed where the device can. */
  void draft_steps(std::vector<Request*>& batch, int g, bool rejection);
  /** Waits for the device and copies the first `lm` LM rows' tokens into argmax_ (and their logits when kept). */
  void read_back(int lm);
  /** Writes r's sampling parameters, seed and noise position into slot i of the host staging arrays. */
  void stage_sampling(size_t i, const Request& r, int32_t pos);
  /** Uploads the first n entries of the s_* sampling arguments to their device buffers. */
  void upload_sampling(int n);
  /** Runs one kernel call (a status-returning callable), adding its wall time to stats_.kernel_s[kind][cls]. */
  template <class F>
  void timed(StepKind kind, KernelClass cls, const char* kernel, F&& call);
  /** Replaces d_argmax_[i] by md_sample's token for the LM rows (logits in logits_) when any of them samples. */
  void sample(StepKind kind, const Rows& rows, const std::vector<int>& lm_rows, const std::vector<Request*>& lm_reqs);
  /** Logits of forward's i-th LM row (null without a logits buffer; emit reads it only for a request that keeps them). */
  const float* lm_logits(size_t i) const;
  void check(int status, const char* kernel) const;
  /** Appends a token (and its logits row) to r, finishing it at a stop token or max_tokens; false once done. */
  bool emit(Request& r, int32_t token, const float* logits);
  void finish(Request& r, FinishReason reason);
  std::vector<Request*> running(RequestState s);
  bool any_running(RequestState s) const;

  EngineOptions opts_;
  std::unique_ptr<Module> module_;
  std::unique_ptr<Device> device_;  // before everything allocated on it, so it is destroyed after them
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<KvCache> cache_;
  int gamma_ = 0;  // 1..module gamma, kGammaAuto or kGammaOff
  GammaTuner tuner_{1};  // fed by every speculative round, consulted when gamma_ is kGammaAuto
  int max_rows_ = 0;
  int prefill_chunk_ = 0;
  int step_tokens_ = 0;
  // Positions past max_tokens a round may write: the module's gamma in spec mode, so that any gamma set
  // later (set_gamma, auto) fits the pages a request reserved at admission.
  int64_t overshoot_ = 0;
  std::vector<float> target_params_, draft_params_;

  std::map<int64_t, std::unique_ptr<Request>> requests_;
  std::vector<Request*> queue_;        // admitted in FIFO order
  std::vector<Request*> slots_;        // slot -> request or null
  std::vector<Request*> in_pass_;      // requests with rows in this step's forward passes: a failure fails these
  mutable std::mutex incoming_mu_;
  std::vector<std::unique_ptr<Request>> incoming_;
  std::vector<int64_t> cancels_;       // ids cancel() recorded, applied by the next step (under incoming_mu_)
  int64_t next_id_ = 1;
  std::mt19937_64 seed_rng_{std::random_device{}()};  // draws the seeds of requests without one
  int last_bucket_ = 0;  // bucket of the latest forward call
  EngineStats stats_;

  // Device activation buffers sized for max_rows_.
  DeviceBuffer<float> x_, h_, q_, k_, v_, attn_, o_, gate_, up_, act_, down_, lm_in_, attn_ws_;
  DeviceBuffer<float> logits_;  // [max_rows_, vocab] with keep_logits or once a request samples or keeps logits; empty otherwise
  DeviceBuffer<float> draft_logits_;  // [max_batch, gamma, vocab]: a round's draft rows ('sample' verifier, once a request samples)
  // A forward call's rows and LM tokens on the device; a round's drafted [max_batch, gamma] and target
  // [max_batch, gamma + 1] tokens, accepted lengths and next tokens.
  DeviceBuffer<int32_t> d_tokens_, d_row_seq_, d_row_pos_, d_seq_len_, d_argmax_;
  DeviceBuffer<int32_t> d_drafted_, d_target_, d_accepted_, d_next_;
  // md_sample's (per LM row) or md_verify_sample's (per sequence) sampling arguments on the device.
  DeviceBuffer<float> d_temperature_, d_top_p_, d_min_p_;
  DeviceBuffer<int32_t> d_top_k_, d_pos_;
  DeviceBuffer<uint32_t> d_seed_;
  DeviceBuffer<float> d_target_params_, d_draft_params_;  // mirrors of target_params_, draft_params_
  bool params_dirty_ = true;
  // A round's draft steps' positions and sequence lengths ([gamma][max_batch + max_batch]), uploaded at once.
  DeviceBuffer<int32_t> d_draft_rows_;
  std::vector<int32_t> draft_rows_;
  // The draft steps as CUDA graphs, by (sequences, gamma, bucket): run uncaptured the first time (so that
  // the launchers' one-time set-up happens outside a capture), captured the second, then replayed.
  struct DraftGraph {
    bool ran = false;  // uncaptured, once
    std::optional<DeviceGraph> graph;
  };
  std::map<std::tuple<int, int, int>, DraftGraph> draft_graphs_;
  std::string graphs_off_;  // why a capture failed, after which the draft's steps run uncaptured ("" until then)
  // Host sides: what is uploaded, and what read_back reads.
  std::vector<int32_t> tokens_, row_seq_, row_pos_, seq_len_, argmax_;
  std::vector<float> host_logits_;  // [max_rows_, vocab] with keep_logits or once a request keeps logits
  bool logits_kept_ = false;         // the latest forward wrote logits that a request keeps (read back with its tokens)
  std::vector<float> s_temperature_, s_top_p_, s_min_p_;
  std::vector<int32_t> s_top_k_, s_pos_;
  std::vector<uint32_t> s_seed_;
};

}  // namespace md
