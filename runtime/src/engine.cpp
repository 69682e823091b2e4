#include "engine.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "error.h"
#include "json.h"

namespace md {

namespace {

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

/** A float parameter as JavaScript shows it: the shortest digits that read back (0.7, -1), NaN, Infinity. */
std::string num(float x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, double(x));
    if (std::strtof(buf, nullptr) == x) break;
  }
  return buf;
}

}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::None: return "none";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Error: return "error";
    case FinishReason::Cancelled: return "cancelled";
  }
  return "?";
}

/** The rows of one forward call: token, cache slot and absolute position of each. */
struct Engine::Rows {
  std::vector<int32_t> token, slot, pos;
  void push(int32_t t, int32_t s, int64_t p) {
    token.push_back(t);
    slot.push_back(s);
    pos.push_back(int32_t(p));
  }
  int size() const { return int(token.size()); }
};

Engine::Engine(const std::string& model_dir, const std::string& module_path, const EngineOptions& opts)
    : opts_(opts) {
  module_ = std::make_unique<Module>(module_path);
  const ModuleManifest& m = module_->manifest();
  weights_ = ModelWeights::load(model_dir, m.dtype);
  check_manifest_model(m.json, module_path + " (manifest)", weights_->config(), model_dir + "/config.json");
  if (m.verify_mode != "greedy" && m.verify_mode != "match" && m.verify_mode != "sample")
    throw Error(module_path + ": verify mode '" + m.verify_mode + "' is not implemented by this runtime (greedy, match and sample)");

  const int largest = module_->largest_bucket().bucket;
  if (opts_.max_batch == 0) opts_.max_batch = largest;
  if (opts_.max_batch < 1 || opts_.max_batch > largest)
    throw Error("option max_batch: " + std::to_string(opts_.max_batch) + " outside 1.." + std::to_string(largest) +
                " (the module's largest batch bucket)");
  if (opts_.gamma == 0) opts_.gamma = m.adaptive_gamma ? kGammaAuto : m.gamma;
  tuner_ = GammaTuner(m.gamma);
  try {
    set_gamma(opts_.gamma);
  } catch (const Error& e) {
    throw Error(std::string("option ") + e.what());
  }
  max_rows_ = module_->largest_bucket().max_rows;
  if (opts_.prefill_chunk == 0) opts_.prefill_chunk = max_rows_;
  if (opts_.prefill_chunk < 1 || opts_.prefill_chunk > max_rows_)
    throw Error("option prefill_chunk: " + std::to_string(opts_.prefill_chunk) + " outside 1.." +
                std::to_string(max_rows_));
  prefill_chunk_ = opts_.prefill_chunk;
  overshoot_ = opts_.mode == Mode::Spec ? m.gamma : 0;
  // A full decode round must leave room for prefill rows in every step (Engine::step).
  const int64_t round_rows = int64_t(opts_.max_batch) * (opts_.mode == Mode::Spec ? m.gamma + 1 : 1);
  if (opts_.step_tokens == 0) opts_.step_tokens = max_rows_;
  if (opts_.step_tokens < round_rows)
    throw Error("option step_tokens: " + std::to_string(opts_.step_tokens) + " is less than the " +
                std::to_string(round_rows) + " rows of a full decode round (max_batch " + std::to_string(opts_.max_batch) +
                (opts_.mode == Mode::Spec ? " x (gamma " + std::to_string(m.gamma) + " + 1)" : std::string()) +
                "), which would leave no rows to prefill a prompt");
  step_tokens_ = opts_.step_tokens;
  if (opts_.kv_pages == 0) {
    const int64_t pages = int64_t(opts_.max_batch) * m.pages_per_seq;
    if (pages > INT_MAX)
      throw Error("option kv_pages: the default (max_batch " + std::to_string(opts_.max_batch) + " * pagesPerSeq " +
                  std::to_string(m.pages_per_seq) + ") exceeds the int32 range; pass kv_pages");
    opts_.kv_pages = int(pages);
  }
  if (opts_.kv_pages < 1) throw Error("option kv_pages: must be positive, got " + std::to_string(opts_.kv_pages));

  const ModelConfig& c = weights_->config();
  KvCacheShape ks;
  ks.num_layers = c.num_layers;
  ks.num_kv_heads = c.num_kv_heads;
  ks.head_dim = c.head_dim;
  ks.page_size = m.page_size;
  ks.num_pages = opts_.kv_pages;
  ks.num_slots = opts_.max_batch;
  ks.pages_per_seq = m.pages_per_seq;
  ks.dtype = m.dtype;
  cache_ = std::make_unique<KvCache>(ks);
  slots_.assign(size_t(opts_.max_batch), nullptr);

  for (const PassParam& p : m.target_params) target_params_.push_back(p.value);
  for (const PassParam& p : m.draft_params) draft_params_.push_back(p.value);

  const size_t R = size_t(max_rows_), H = size_t(c.hidden_size), I = size_t(c.intermediate_size);
  const size_t QD = size_t(c.num_heads) * c.head_dim, KD = size_t(c.num_kv_heads) * c.head_dim;
  for (auto* b : {&x_, &h_, &o_, &down_, &lm_in_}) b->assign(R * H, 0.f);
  for (auto* b : {&q_, &attn_}) b->assign(R * QD, 0.f);
  for (auto* b : {&k_, &v_}) b->assign(R * KD, 0.f);
  for (auto* b : {&gate_, &up_, &act_}) b->assign(R * I, 0.f);
  if (opts_.keep_logits) logits_.assign(R * size_t(c.vocab_size), 0.f);
  attn_ws_.assign(std::max<size_t>(1, module_->extras().attn_workspace_floats(int32_t(R))), 0.f);
  for (auto* b : {&tokens_, &row_seq_, &row_pos_, &argmax_, &s_top_k_, &s_pos_}) b->assign(R, 0);
  for (auto* b : {&s_temperature_, &s_top_p_, &s_min_p_}) b->assign(R, 0.f);
  s_seed_.assign(2 * R, 0);
  seq_len_.assign(size_t(opts_.max_batch), 0);
}

Engine::~Engine() = default;

int64_t Engine::add_request(const std::vector<int32_t>& prompt, const RequestOptions& opts) {
  const ModelConfig& c = weights_->config();
  const ModuleManifest& m = module_->manifest();
  if (prompt.empty()) throw Error("request: the prompt is empty");
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] < 0 || prompt[i] >= c.vocab_size)
      throw Error("request: prompt token " + std::to_string(i) + " is " + std::to_string(prompt[i]) +
                  ", outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
  if (opts.max_tokens < 1) throw Error("request: max_tokens must be at least 1, got " + std::to_string(opts.max_tokens));
  int64_t need = int64_t(prompt.size()) + opts.max_tokens + overshoot_;
  if (need > m.max_seq)
    throw Error("request: prompt (" + std::to_string(prompt.size()) + ") + max_tokens (" +
                std::to_string(opts.max_tokens) + ")" + (overshoot_ ? " + the module's gamma (" + std::to_string(overshoot_) + ")" : "") +
                " = " + std::to_string(need) + " exceeds the module's maxSeq " + std::to_string(m.max_seq));
  if (cache_->pages_for(need) > cache_->shape().num_pages)
    throw Error("request: needs " + std::to_string(cache_->pages_for(need)) + " KV pages, the pool has only " +
                std::to_string(cache_->shape().num_pages) + " (raise kv_pages)");
  for (int32_t s : opts.stop_tokens)
    if (s < 0 || s >= c.vocab_size) throw Error("request: stop token " + std::to_string(s) + " is outside the vocabulary");
  const SamplingParams& sp = opts.sampling;
  // The checks of md_sampling_params_ok (templates/common/md_sampling.h), with what each value means.
  if (!(sp.temperature >= 0 && std::isfinite(sp.temperature)))
    throw Error("request: temperature must be a finite number >= 0 (0 is greedy), got " + num(sp.temperature));
  if (sp.top_k < 0) throw Error("request: top_k must be an integer >= 0 (0 keeps every token), got " + std::to_string(sp.top_k));
  if (!(sp.top_p > 0 && sp.top_p <= 1)) throw Error("request: top_p must be in (0, 1] (1 keeps every token), got " + num(sp.top_p));
  if (!(sp.min_p >= 0 && sp.min_p <= 1)) throw Error("request: min_p must be in [0, 1] (0 keeps every token), got " + num(sp.min_p));
  if (!sp.greedy() && opts_.mode == Mode::Spec && m.verify_mode == "greedy")
    throw Error("request: temperature " + num(sp.temperature) + " samples, but this module's verifier '" + m.verify_name +
                "' accepts only the target's argmax; decode sampled requests in ar mode, or build the module with verify: sampleAndMatch");
  auto r = std::make_unique<Request>();
  r->prompt = prompt;
  r->opts = opts;
  r->stats.prompt_tokens = int(prompt.size());
  std::lock_guard<std::mutex> lock(incoming_mu_);
  r->id = next_id_++;
  r->seed = opts.has_seed ? opts.seed : seed_rng_() >> 11;
  int64_t id = r->id;
  incoming_.push_back(std::move(r));
  return id;
}

void Engine::drain_incoming() {
  std::vector<std::unique_ptr<Request>> in;
  {
    std::lock_guard<std::mutex> lock(incoming_mu_);
    in.swap(incoming_);
  }
  for (auto& r : in) {
    // Sampling (and a request keeping its logits) reads LM rows' logits: the buffer keep_logits would have,
    // made on first need; with a
    // 'sample' verifier, md_verify_sample also reads each round's draft rows.
    const size_t V = size_t(weights_->config().vocab_size);
    if ((!r->opts.sampling.greedy() || r->opts.keep_logits) && logits_.empty()) logits_.assign(size_t(max_rows_) * V, 0.f);
    if (!r->opts.sampling.greedy() && draft_logits_.empty() && opts_.mode == Mode::Spec && module_->manifest().verify_mode == "sample")
      draft_logits_.assign(size_t(opts_.max_batch) * size_t(module_->manifest().gamma) * V, 0.f);
    queue_.push_back(r.get());
    requests_.emplace(r->id, std::move(r));
  }
}

bool Engine::cancel(int64_t id) {
  std::lock_guard<std::mutex> lock(incoming_mu_);
  if (id < 1 || id >= next_id_) return false;
  cancels_.push_back(id);
  return true;
}

void Engine::apply_cancels(std::vector<Request*>& done) {
  std::vector<int64_t> ids;
  {
    std::lock_guard<std::mutex> lock(incoming_mu_);
    ids.swap(cancels_);
  }
  for (int64_t id : ids) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;  // released already
    Request* r = it->second.get();
    if (r->state == RequestState::Done || r->state == RequestState::Failed) continue;
    if (r->state == RequestState::Queued) queue_.erase(std::find(queue_.begin(), queue_.end(), r));
    finish(*r, FinishReason::Cancelled);  // frees the slot and its pages
    done.push_back(r);
  }
}

int Engine::queued() const {
  std::lock_guard<std::mutex> lock(incoming_mu_);
  return int(incoming_.size() + queue_.size());
}

int Engine::live() const {
  int n = 0;
  {
    std::lock_guard<std::mutex> lock(incoming_mu_);
    n += int(incoming_.size());
  }
  n += int(queue_.size());
  for (const Request* r : slots_) n += r != nullptr;
  return n;
}

const Request* Engine::request(int64_t id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

bool Engine::release(int64_t id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  RequestState s = it->second->state;
  if (s != RequestState::Done && s != RequestState::Failed) return false;
  requests_.erase(it);
  return true;
}

void Engine::set_param(const std::string& pass, const std::string& key, float value) {
  const ModuleManifest& m = module_->manifest();
  const std::vector<PassParam>* decl;
  std::vector<float>* vals;
  if (pass == "target") {
    decl = &m.target_params;
    vals = &target_params_;
  } else if (pass == "draft") {
    decl = &m.draft_params;
    vals = &draft_params_;
  } else {
    throw Error("set_param: pass must be 'target' or 'draft', got '" + pass + "'");
  }
  std::string known;
  for (size_t i = 0; i < decl->size(); ++i) {
    const PassParam& p = (*decl)[i];
    if (p.key == key) {
      // Kernels convert i32 params with a plain cast: NaN, infinities and values past 2^31 would be undefined
      // behaviour there, and a fraction would be dropped silently, so refuse them here.
      const std::string what = "set_param: " + pass + " param '" + key + "' ";
      char shown[32];
      std::snprintf(shown, sizeof shown, "%.9g", double(value));
      if (!std::isfinite(value)) throw Error(what + "must be finite, got " + shown);
      if (p.i32 && (value != std::floor(value) || std::fabs(value) > 16777216.0f))
        throw Error(what + "is an i32: it takes integers of magnitude up to 2^24, got " + shown);
      (*vals)[i] = value;
      return;
    }
    known += (known.empty() ? "" : ", ") + (*decl)[i].key;
  }
  throw Error("set_param: the " + pass + " pass has no param '" + key + "' (it has: " + (known.empty() ? "none" : known) + ")");
}

void Engine::set_gamma(int gamma) {
  const int most = module_->manifest().gamma;
  if (gamma != kGammaAuto && (gamma < 1 || gamma > most))
    throw Error("gamma: " + std::to_string(gamma) + " outside 1.." + std::to_string(most) +
                " and not auto (the module verifies at most gamma + 1 rows per sequence)");
  gamma_ = gamma;
}

double EngineStats::mean_gamma() const {
  double sum = 0, n = 0;
  for (auto& [g, count] : gamma_rounds) {
    sum += double(g) * double(count);
    n += double(count);
  }
  return n > 0 ? sum / n : 0;
}

// Kernel calls are synchronous (CPU modules), so the wall time around a call is the kernel's.
template <class F>
void Engine::timed(StepKind kind, KernelClass cls, const char* kernel, F&& call) {
  const double t0 = now_s();
  const int status = call();
  stats_.kernel_s[int(kind)][int(cls)] += now_s() - t0;
  check(status, kernel);
}

// Admission reserves every page a request can touch (prompt + max_tokens + the speculative overshoot), so
// a running request never runs out of pages; the queue's head waits when the pool is short.
void Engine::admit(std::vector<Request*>& admitted) {
  while (!queue_.empty()) {
    auto free_slot = std::find(slots_.begin(), slots_.end(), nullptr);
    if (free_slot == slots_.end()) return;
    Request* r = queue_.front();
    int slot = int(free_slot - slots_.begin());
    if (!cache_->reserve(slot, int64_t(r->prompt.size()) + r->opts.max_tokens + overshoot_)) return;
    queue_.erase(queue_.begin());
    r->slot = slot;
    r->state = RequestState::Prefill;
    *free_slot = r;
    admitted.push_back(r);
  }
}

std::vector<Request*> Engine::running(RequestState s) {
  std::vector<Request*> out;
  for (Request* r : slots_)
    if (r && r->state == s) out.push_back(r);
  return out;
}

template <class F>
void Engine::isolated(F&& pass) {
  in_pass_.clear();
  try {
    pass();
  } catch (const std::exception& e) {
    // Only the requests whose rows were in the failed pass fail: a forward pass writes the cache of its own
    // slots only, so the others (waiting to prefill or to decode) and the queue stay usable.
    for (Request* r : in_pass_) {
      if (r->state == RequestState::Done || r->state == RequestState::Failed) continue;
      r->error = e.what();
      finish(*r, FinishReason::Error);
    }
  }
  in_pass_.clear();
}

std::vector<StepEvent> Engine::step() {
  drain_incoming();
  std::vector<Request*> involved;
  apply_cancels(involved);
  std::vector<Request*> admitted;
  admit(admitted);
  for (Request* r : slots_)
    if (r) involved.push_back(r);
  // The decode round first, over the requests decoding now; then a prefill chunk in the rest of the budget,
  // after refilling the slots the round freed (docs in engine.h).
  int round_rows = 0;
  if (!(opts_.prefill_first && !running(RequestState::Prefill).empty())) isolated([&] { decode_round(&round_rows); });
  admitted.clear();
  admit(admitted);
  involved.insert(involved.end(), admitted.begin(), admitted.end());
  isolated([&] { prefill_step(std::max(1, step_tokens_ - round_rows)); });
  ++stats_.steps;
  std::vector<StepEvent> events;
  for (Request* r : involved) {
    if (r->delivered == r->output.size() && r->state != RequestState::Done && r->state != RequestState::Failed) continue;
    StepEvent ev;
    ev.id = r->id;
    ev.tokens.assign(r->output.begin() + ptrdiff_t(r->delivered), r->output.end());
    if (keeps_logits(*r)) {
      size_t V = size_t(weights_->config().vocab_size);
      ev.logits.assign(r->logits.begin() + ptrdiff_t(r->delivered * V), r->logits.end());
    }
    r->delivered = r->output.size();
    ev.finished = r->state == RequestState::Done || r->state == RequestState::Failed;
    ev.reason = r->reason;
    ev.error = r->error;
    events.push_back(std::move(ev));
  }
  return events;
}

void Engine::finish(Request& r, FinishReason reason) {
  r.reason = reason;
  r.state = reason == FinishReason::Error ? RequestState::Failed : RequestState::Done;
  if (r.slot >= 0) {
    cache_->release(r.slot);
    slots_[size_t(r.slot)] = nullptr;
    r.slot = -1;
  }
}

bool Engine::emit(Request& r, int32_t token, const float* logits) {
  r.output.push_back(token);
  ++r.stats.generated;
  ++stats_.generated;
  if (keeps_logits(r)) r.logits.insert(r.logits.end(), logits, logits + weights_->config().vocab_size);
  bool stop = std::find(r.opts.stop_tokens.begin(), r.opts.stop_tokens.end(), token) != r.opts.stop_tokens.end();
  if (!r.opts.ignore_eos)
    for (int eos : weights_->config().eos_token_ids) stop = stop || (eos >= 0 && eos == token);
  if (stop) {
    finish(r, FinishReason::Stop);
    return false;
  }
  if (int(r.output.size()) >= r.opts.max_tokens) {
    finish(r, FinishReason::Length);
    return false;
  }
  return true;
}

void Engine::check(int status, const char* kernel) const {
  if (status != 0) throw Error(std::string("kernel md_") + kernel + " failed: " + module_->status_string(status));
}

// Prompts are fed in chunks of up to min(prefill_chunk, rows) rows, several sequences per chunk; a
// sequence's last prompt row yields its first generated token.
bool Engine::prefill_step(int max_rows) {
  std::vector<Request*> pre = running(RequestState::Prefill);
  if (pre.empty()) return false;
  const int limit = std::min(prefill_chunk_, max_rows);
  double t0 = now_s();
  Rows rows;
  std::vector<int> lm_rows;
  std::vector<Request*> finishing;  // the request of each LM row
  std::vector<Request*> in_chunk;
  for (Request* r : pre) {
    int budget = limit - rows.size();
    if (budget <= 0) break;
    int n = std::min<int>(budget, int(r->prompt.size()) - r->prefilled);
    for (int i = 0; i < n; ++i) rows.push(r->prompt[size_t(r->prefilled + i)], r->slot, r->prefilled + i);
    r->prefilled += n;
    in_chunk.push_back(r);
    in_pass_.push_back(r);
    if (r->prefilled == int(r->prompt.size())) {
      lm_rows.push_back(rows.size() - 1);
      finishing.push_back(r);
    }
  }
  forward(rows, StepKind::Prefill, lm_rows, finishing);
  double dt = now_s() - t0;
  for (Request* r : in_chunk) {
    r->cache_len = r->prefilled;
    r->stats.prefill_s += dt;
  }
  for (size_t i = 0; i < finishing.size(); ++i) {
    Request* r = finishing[i];
    r->state = RequestState::Decode;
    r->pending = argmax_[i];
    emit(*r, argmax_[i], lm_logits(i));
  }
  ++stats_.prefill_steps;
  stats_.prefill_tokens += rows.size();
  stats_.prefill_s += dt;
  return true;
}

void Engine::decode_round(int* rows) {
  std::vector<Request*> batch = running(RequestState::Decode);
  if (batch.empty()) return;
  in_pass_ = batch;
  if (opts_.mode == Mode::Spec) spec_round(batch, rows);
  else {
    *rows = int(batch.size());
    ar_round(batch);
  }
}

void Engine::ar_round(std::vector<Request*>& batch) {
  double t0 = now_s();
  Rows rows;
  std::vector<int> lm_rows;
  for (Request* r : batch) {
    lm_rows.push_back(rows.size());
    rows.push(r->pending, r->slot, r->cache_len);
  }
  forward(rows, StepKind::Ar, lm_rows, batch);
  double dt = now_s() - t0;
  for (size_t i = 0; i < batch.size(); ++i) {
    Request* r = batch[i];
    r->cache_len += 1;
    r->pending = argmax_[i];
    r->stats.decode_s += dt;
    emit(*r, argmax_[i], lm_logits(i));
  }
  ++stats_.ar_steps;
  ++stats_.bucket_rounds[last_bucket_];
  stats_.decode_s += dt;
}

void Engine::spec_round(std::vector<Request*>& batch, int* rows_out) {
  const int n = int(batch.size());
  const int g = gamma_ == kGammaAuto ? tuner_.choose(n) : gamma_;
  *rows_out = n * (g + 1);
  const int G = module_->manifest().gamma;  // md_verify_greedy's fixed row stride
  // Unused draft columns (g < G) hold -1, which never matches a target token, so acceptance stops at g.
  const bool rejection = module_->manifest().verify_mode == "sample" && !draft_logits_.empty();
  const size_t V = size_t(weights_->config().vocab_size);
  std::vector<int32_t> drafted(size_t(n) * G, -1), target(size_t(n) * (G + 1), 0);
  std::vector<int32_t> accepted(size_t(n), 0), next(size_t(n), 0);

  // A round writes positions cache_len .. cache_len + g: all inside the pages reserved at admission, since
  // overshoot_ covers any gamma. Checked, because a write past them would land in another request's pages.
  for (Request* r : batch)
    if (r->cache_len + g >= int64_t(cache_->slot_pages(r->slot)) * cache_->shape().page_size)
      throw Error("internal: a gamma-" + std::to_string(g) + " round would write past the KV pages request " +
                  std::to_string(r->id) + " reserved");

  double t0 = now_s();
  // With a 'match' verifier a sampling request's drafts are the draft's samples under the noise of their
  // positions, and its target tokens the target's samples (forward -> sample): verify_greedy then accepts
  // while they agree, and the emitted tokens are the autoregressive samples (docs/DSL.md, "Verifiers").
  std::vector<int> all;
  for (int i = 0; i < n; ++i) all.push_back(i);
  for (int j = 0; j < g; ++j) {
    Rows rows;
    for (int i = 0; i < n; ++i) {
      Request* r = batch[size_t(i)];
      rows.push(j == 0 ? r->pending : drafted[size_t(i) * G + j - 1], r->slot, r->cache_len + j);
    }
    forward(rows, StepKind::Draft, all, batch);
    for (int i = 0; i < n; ++i) drafted[size_t(i) * G + j] = argmax_[size_t(i)];
    if (rejection)
      for (int i = 0; i < n; ++i)
        if (!batch[size_t(i)]->opts.sampling.greedy())
          std::memcpy(draft_logits_.data() + (size_t(i) * G + j) * V, logits_.data() + size_t(i) * V, V * sizeof(float));
  }
  double t1 = now_s();

  // Verification rewrites positions cache_len .. cache_len + g with the target's K/V.
  Rows rows;
  std::vector<int> lm_rows;
  std::vector<Request*> lm_reqs;
  for (int i = 0; i < n; ++i) {
    Request* r = batch[size_t(i)];
    for (int j = 0; j <= g; ++j) {
      lm_rows.push_back(rows.size());
      lm_reqs.push_back(r);
      rows.push(j == 0 ? r->pending : drafted[size_t(i) * G + j - 1], r->slot, r->cache_len + j);
    }
  }
  forward(rows, StepKind::Verify, lm_rows, lm_reqs);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j <= g; ++j) target[size_t(i) * (G + 1) + j] = argmax_[size_t(i) * (g + 1) + j];
  timed(StepKind::Verify, KernelClass::Other, "verify_greedy",
        [&] { return module_->verify_greedy(target.data(), drafted.data(), accepted.data(), next.data(), n, nullptr); });
  // A 'sample' verifier: each sampling request's drafts, sampled from the draft's distribution q, are
  // accepted or resampled by the module's rule against the target's p (greedy requests keep the argmax
  // verification above). One sequence a call: its verified rows are contiguous in logits_.
  if (rejection) {
    for (int i = 0; i < n; ++i) {
      const Request* r = batch[size_t(i)];
      const SamplingParams& sp = r->opts.sampling;
      if (sp.greedy()) continue;
      const uint32_t seed[2] = {uint32_t(r->seed), uint32_t(r->seed >> 32)};
      const int32_t pos = int32_t(r->cache_len);
      timed(StepKind::Verify, KernelClass::Other, "verify_sample", [&] {
        return module_->verify_sample(logits_.data() + size_t(i) * (g + 1) * V, draft_logits_.data() + size_t(i) * G * V,
                                      drafted.data() + size_t(i) * G, &sp.temperature, &sp.top_k, &sp.top_p, &sp.min_p, seed, &pos,
                                      &accepted[size_t(i)], &next[size_t(i)], g, 1, nullptr);
      });
    }
  }
  double t2 = now_s();

  for (int i = 0; i < n; ++i) {
    Request* r = batch[size_t(i)];
    int a = accepted[size_t(i)];
    if (a < 0 || a > g) throw Error("kernel md_verify_greedy returned accepted " + std::to_string(a) + " outside 0.." + std::to_string(g));
    if (next[size_t(i)] < 0 || size_t(next[size_t(i)]) >= V)
      throw Error("verification returned next token " + std::to_string(next[size_t(i)]) + ", outside the vocabulary");
    r->stats.rounds += 1;
    r->stats.drafted += g;
    r->stats.accepted += a;
    r->stats.draft_s += t1 - t0;
    r->stats.verify_s += t2 - t1;
    stats_.drafted += g;
    stats_.accepted += a;
    // Emitted: the a accepted drafts, then the target's token after them; rows i*(g+1) + 0..a hold their logits.
    const size_t first = size_t(i) * (g + 1);
    bool going = true;
    for (int j = 0; j < a && going; ++j) going = emit(*r, drafted[size_t(i) * G + j], lm_logits(first + size_t(j)));
    if (going) emit(*r, next[size_t(i)], lm_logits(first + size_t(a)));
    // Rollback is this: the cache keeps a + 1 verified positions; the rest is overwritten later.
    r->cache_len += a + 1;
    r->pending = next[size_t(i)];
  }
  tuner_.record(n, g, accepted.data(), t1 - t0, t2 - t1);
  ++stats_.rounds;
  ++stats_.bucket_rounds[last_bucket_];
  ++stats_.gamma_rounds[g];
  stats_.draft_s += t1 - t0;
  stats_.verify_s += t2 - t1;
}

void Engine::forward(const Rows& rows, StepKind kind, const std::vector<int>& lm_rows, const std::vector<Request*>& lm_reqs) {
  const bool draft = kind == StepKind::Draft;
  using K = KernelClass;
  const int R = rows.size();
  if (R == 0) return;
  int seqs = 0;
  std::fill(seq_len_.begin(), seq_len_.end(), 0);
  for (int i = 0; i < R; ++i) {
    int32_t& len = seq_len_[size_t(rows.slot[size_t(i)])];
    if (len == 0) ++seqs;
    len = std::max(len, rows.pos[size_t(i)] + 1);
  }
  const BucketKernels* bk = module_->bucket_for(seqs, R);
  if (!bk)
    throw Error("no batch bucket holds " + std::to_string(seqs) + " sequences and " + std::to_string(R) + " rows");
  last_bucket_ = bk->bucket;
  std::copy(rows.token.begin(), rows.token.end(), tokens_.begin());
  std::copy(rows.slot.begin(), rows.slot.end(), row_seq_.begin());
  std::copy(rows.pos.begin(), rows.pos.end(), row_pos_.begin());

  const ModelConfig& c = weights_->config();
  const std::vector<float>& params = draft ? draft_params_ : target_params_;
  md_attn_fn attn = draft ? bk->attn_draft : bk->attn_target;
  timed(kind, K::Other, "embed", [&] { return module_->embed(weights_->embed(), tokens_.data(), x_.data(), R, nullptr); });
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = weights_->layers()[size_t(l)];
    timed(kind, K::NormRope, "rmsnorm", [&] { return module_->rmsnorm(x_.data(), w.input_norm, h_.data(), R, nullptr); });
    timed(kind, K::Gemm, "gemm_q", [&] { return bk->gemm_q(h_.data(), w.q, w.q_bias, q_.data(), R, nullptr); });
    timed(kind, K::Gemm, "gemm_kv", [&] { return bk->gemm_kv(h_.data(), w.k, w.k_bias, k_.data(), R, nullptr); });
    timed(kind, K::Gemm, "gemm_kv", [&] { return bk->gemm_kv(h_.data(), w.v, w.v_bias, v_.data(), R, nullptr); });
    timed(kind, K::NormRope, "rope_append", [&] {
      return module_->rope_append(q_.data(), k_.data(), v_.data(), cache_->k_layer(l), cache_->v_layer(l), cache_->page_table(),
                                  cache_->shape().pages_per_seq, row_seq_.data(), row_pos_.data(), R, nullptr);
    });
    md_attn_args a;
    a.q = q_.data();
    a.k_cache = cache_->k_layer(l);
    a.v_cache = cache_->v_layer(l);
    a.page_table = cache_->page_table();
    a.pages_per_seq = cache_->shape().pages_per_seq;
    a.row_seq = row_seq_.data();
    a.row_pos = row_pos_.data();
    a.seq_len = seq_len_.data();
    a.rows = R;
    a.params = params.empty() ? nullptr : params.data();
    a.out = attn_.data();
    a.workspace = attn_ws_.data();
    a.stream = nullptr;
    timed(kind, K::Attention, draft ? "attn_draft" : "attn_target", [&] { return attn(&a); });
    timed(kind, K::Gemm, "gemm_o", [&] { return bk->gemm_o(attn_.data(), w.o, nullptr, o_.data(), R, nullptr); });
    timed(kind, K::NormRope, "add_rmsnorm", [&] { return module_->add_rmsnorm(x_.data(), o_.data(), w.post_norm, h_.data(), R, nullptr); });
    timed(kind, K::Gemm, "gemm_gate_up", [&] { return bk->gemm_gate_up(h_.data(), w.gate, nullptr, gate_.data(), R, nullptr); });
    timed(kind, K::Gemm, "gemm_gate_up", [&] { return bk->gemm_gate_up(h_.data(), w.up, nullptr, up_.data(), R, nullptr); });
    timed(kind, K::Other, "swiglu", [&] { return module_->swiglu(gate_.data(), up_.data(), act_.data(), R, nullptr); });
    timed(kind, K::Gemm, "gemm_down", [&] { return bk->gemm_down(act_.data(), w.down, nullptr, down_.data(), R, nullptr); });
    timed(kind, K::Other, "add", [&] { return module_->add(x_.data(), down_.data(), R, nullptr); });
  }
  // Only the rows that need logits go through the final norm and the LM head (row invariance makes the
  // gathered rows' results identical to computing all of them).
  const size_t H = size_t(c.hidden_size);
  const int L = int(lm_rows.size());
  if (L == 0) return;
  timed(kind, K::Other, "gather", [&] {
    for (int i = 0; i < L; ++i)
      std::memcpy(lm_in_.data() + size_t(i) * H, x_.data() + size_t(lm_rows[size_t(i)]) * H, H * sizeof(float));
    return 0;
  });
  timed(kind, K::NormRope, "rmsnorm", [&] { return module_->rmsnorm(lm_in_.data(), weights_->final_norm(), h_.data(), L, nullptr); });
  // The draft's logits are never emitted: its tokens only. Sampled rows need them whichever the pass; a
  // target pass writes them when any of its rows' requests keeps its logits.
  bool sampling = false, keep = false;
  for (const Request* r : lm_reqs) {
    sampling = sampling || !r->opts.sampling.greedy();
    keep = keep || keeps_logits(*r);
  }
  float* logits = (keep && !draft) || sampling ? logits_.data() : nullptr;
  timed(kind, K::Gemm, "lm_head_argmax", [&] { return bk->lm_head_argmax(h_.data(), weights_->lm_head(), logits, argmax_.data(), L, nullptr); });
  if (sampling) sample(kind, rows, lm_rows, lm_reqs);
}

// Every LM row goes through md_sample once one samples: a greedy row's token is md_argmax's there, the
// token lm_head_argmax gave it (the kernel tests hold md_sample at temperature 0 to md_argmax).
void Engine::sample(StepKind kind, const Rows& rows, const std::vector<int>& lm_rows, const std::vector<Request*>& lm_reqs) {
  const int L = int(lm_rows.size());
  for (int i = 0; i < L; ++i) {
    const Request* r = lm_reqs[size_t(i)];
    const SamplingParams& sp = r->opts.sampling;
    s_temperature_[size_t(i)] = sp.temperature;
    s_top_k_[size_t(i)] = sp.top_k;
    s_top_p_[size_t(i)] = sp.top_p;
    s_min_p_[size_t(i)] = sp.min_p;
    s_seed_[2 * size_t(i)] = uint32_t(r->seed);
    s_seed_[2 * size_t(i) + 1] = uint32_t(r->seed >> 32);
    s_pos_[size_t(i)] = rows.pos[size_t(lm_rows[size_t(i)])];
  }
  timed(kind, KernelClass::Other, "sample", [&] {
    return module_->sample(logits_.data(), s_temperature_.data(), s_top_k_.data(), s_top_p_.data(), s_min_p_.data(), s_seed_.data(),
                           s_pos_.data(), argmax_.data(), L, nullptr);
  });
}

const float* Engine::lm_logits(size_t i) const {
  return logits_.empty() ? nullptr : logits_.data() + i * size_t(weights_->config().vocab_size);
}

std::string Engine::info_json() const {
  const ModelConfig& c = weights_->config();
  const ModuleManifest& m = module_->manifest();
  json::Writer w;
  w.begin_object();
  w.key("model").begin_object();
  w.key("architecture").value(c.architecture).key("hiddenSize").value(c.hidden_size).key("numLayers").value(c.num_layers);
  w.key("numHeads").value(c.num_heads).key("numKvHeads").value(c.num_kv_heads).key("headDim").value(c.head_dim);
  w.key("vocabSize").value(c.vocab_size).key("convertedBytes").value(size_t(weights_->converted_bytes()));
  w.end_object();
  w.key("module").begin_object();
  w.key("path").value(module_->path()).key("name").value(m.name).key("hash").value(m.hash).key("arch").value(m.arch);
  w.key("dtype").value(dtype_manifest_name(m.dtype)).key("gamma").value(m.gamma).key("adaptiveGamma").value(m.adaptive_gamma);
  w.key("buckets").begin_array();
  for (int b : m.buckets) w.value(b);
  w.end_array();
  w.key("maxSeq").value(m.max_seq).key("pageSize").value(m.page_size);
  w.end_object();
  auto params = [&](const std::vector<PassParam>& d, const std::vector<float>& v) {
    w.begin_object();
    for (size_t i = 0; i < d.size(); ++i) w.key(d[i].key).value(double(v[i]));
    w.end_object();
  };
  w.key("params").begin_object();
  w.key("target");
  params(m.target_params, target_params_);
  w.key("draft");
  params(m.draft_params, draft_params_);
  w.end_object();
  w.key("options").begin_object();
  w.key("maxBatch").value(opts_.max_batch).key("kvPages").value(opts_.kv_pages);
  w.key("mode").value(opts_.mode == Mode::Spec ? "spec" : "ar").key("gamma");
  if (gamma_ == kGammaAuto) w.value("auto");
  else w.value(gamma_);
  w.key("gammaMax").value(m.gamma);
  w.key("prefillChunk").value(prefill_chunk_).key("stepTokens").value(step_tokens_).key("keepLogits").value(opts_.keep_logits);
  w.key("prefillFirst").value(opts_.prefill_first);
  w.end_object();
  w.key("freePages").value(cache_->free_pages());
  w.end_object();
  return w.str();
}

}  // namespace md
