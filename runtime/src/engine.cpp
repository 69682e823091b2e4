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
  // The module's target picks the device: an emulated CUDA module's "device" memory is host memory that
  // its kernels cannot be handed in place of device buffers, so it gets the host device with copies.
  device_ = m.arch == "cpu"          ? make_cpu_device()
            : module_->emulated() ? make_emulated_device(m.arch)
                                  : make_cuda_device(m.arch, module_path);
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
  cache_ = std::make_unique<KvCache>(ks, *device_);
  slots_.assign(size_t(opts_.max_batch), nullptr);

  for (const PassParam& p : m.target_params) target_params_.push_back(p.value);
  for (const PassParam& p : m.draft_params) draft_params_.push_back(p.value);

  weights_->place(*device_);
  Device& d = *device_;
  const size_t R = size_t(max_rows_), H = size_t(c.hidden_size), I = size_t(c.intermediate_size);
  const size_t QD = size_t(c.num_heads) * c.head_dim, KD = size_t(c.num_kv_heads) * c.head_dim;
  const size_t B = size_t(opts_.max_batch), G = size_t(m.gamma), V = size_t(c.vocab_size);
  const std::string acts = "activations";
  for (auto* b : {&x_, &h_, &o_, &down_, &lm_in_}) *b = DeviceBuffer<float>(d, R * H, acts);
  for (auto* b : {&q_, &attn_}) *b = DeviceBuffer<float>(d, R * QD, acts);
  for (auto* b : {&k_, &v_}) *b = DeviceBuffer<float>(d, R * KD, acts);
  for (auto* b : {&gate_, &up_, &act_}) *b = DeviceBuffer<float>(d, R * I, acts);
  if (opts_.keep_logits) {
    logits_ = DeviceBuffer<float>(d, R * V, "logits (keep_logits)");
    host_logits_.assign(R * V, 0.f);
  }
  attn_ws_ = DeviceBuffer<float>(d, std::max<size_t>(1, module_->extras().attn_workspace_floats(int32_t(R))), "the attention workspace");
  for (auto* b : {&d_tokens_, &d_row_seq_, &d_row_pos_, &d_argmax_, &d_top_k_, &d_pos_}) *b = DeviceBuffer<int32_t>(d, R, "row data");
  for (auto* b : {&d_temperature_, &d_top_p_, &d_min_p_}) *b = DeviceBuffer<float>(d, R, "sampling parameters");
  d_seed_ = DeviceBuffer<uint32_t>(d, 2 * R, "sampling seeds");
  d_seq_len_ = DeviceBuffer<int32_t>(d, B, "sequence lengths");
  d_target_params_ = DeviceBuffer<float>(d, target_params_.size(), "the target pass's params");
  d_draft_params_ = DeviceBuffer<float>(d, draft_params_.size(), "the draft pass's params");
  d_drafted_ = DeviceBuffer<int32_t>(d, B * G, "drafted tokens");
  d_target_ = DeviceBuffer<int32_t>(d, B * (G + 1), "target tokens");
  for (auto* b : {&d_accepted_, &d_next_}) *b = DeviceBuffer<int32_t>(d, B, "verification results");
  d_draft_rows_ = DeviceBuffer<int32_t>(d, G * 2 * B, "the draft steps' rows");
  draft_rows_.assign(G * 2 * B, 0);
  for (auto* b : {&tokens_, &row_seq_, &row_pos_, &argmax_, &s_top_k_, &s_pos_}) b->assign(R, 0);
  for (auto* b : {&s_temperature_, &s_top_p_, &s_min_p_}) b->assign(R, 0.f);
  s_seed_.assign(2 * R, 0);
  seq_len_.assign(B, 0);
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

void Engine::drain_incoming(std::vector<Request*>& failed) {
  std::vector<std::unique_ptr<Request>> in;
  {
    std::lock_guard<std::mutex> lock(incoming_mu_);
    in.swap(incoming_);
  }
  for (auto& r : in) {
    // Sampling (and a request keeping its logits) reads LM rows' logits: the buffer keep_logits would have,
    // made on first need; with a 'sample' verifier, md_verify_sample also reads each round's draft rows.
    // Device memory may run out here: then this request fails, and the engine goes on without the buffers.
    const size_t V = size_t(weights_->config().vocab_size);
    try {
      if ((!r->opts.sampling.greedy() || r->opts.keep_logits) && logits_.empty())
        logits_ = DeviceBuffer<float>(*device_, size_t(max_rows_) * V, "logits (a sampling request)");
      if (r->opts.keep_logits && host_logits_.empty()) host_logits_.assign(size_t(max_rows_) * V, 0.f);
      if (!r->opts.sampling.greedy() && draft_logits_.empty() && opts_.mode == Mode::Spec && module_->manifest().verify_mode == "sample")
        draft_logits_ = DeviceBuffer<float>(*device_, size_t(opts_.max_batch) * size_t(module_->manifest().gamma) * V,
                                            "draft logits (a sampling request)");
      queue_.push_back(r.get());
    } catch (const Error& e) {
      r->error = e.what();
      finish(*r, FinishReason::Error);
      failed.push_back(r.get());
    }
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
      params_dirty_ = true;
      return;
    }
    known += (known.empty() ? "" : ", ") + (*decl)[i].key;
  }
  throw Error("set_param: the " + pass + " pass has no param '" + key + "' (it has: " + (known.empty() ? "none" : known) + ")");
}

void Engine::set_gamma(int gamma) {
  const int most = module_->manifest().gamma;
  if (gamma != kGammaAuto && gamma != kGammaOff && (gamma < 1 || gamma > most))
    throw Error("gamma: " + std::to_string(gamma) + " outside 1.." + std::to_string(most) +
                " and neither auto nor off (the module verifies at most gamma + 1 rows per sequence)");
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

// On the CPU kernel calls are synchronous, so the wall time around a call is the kernel's; on a GPU it is
// the launch's (EngineStats::kernel_s).
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

bool Engine::any_running(RequestState s) const {
  return std::any_of(slots_.begin(), slots_.end(), [s](const Request* r) { return r && r->state == s; });
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
  std::vector<Request*> involved;
  drain_incoming(involved);
  apply_cancels(involved);
  std::vector<Request*> admitted;
  admit(admitted);
  for (Request* r : slots_)
    if (r) involved.push_back(r);
  // The decode round first, over the requests decoding now; then a prefill chunk in the rest of the budget,
  // after refilling the slots the round freed (docs in engine.h).
  int round_rows = 0;
  if (!(opts_.prefill_first && any_running(RequestState::Prefill))) isolated([&] { decode_round(&round_rows); });
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
  read_back(int(lm_rows.size()));
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
  if (opts_.mode == Mode::Spec && gamma_ != kGammaOff) spec_round(batch, rows);
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
  read_back(int(lm_rows.size()));
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
  const bool rejection = module_->manifest().verify_mode == "sample" && !draft_logits_.empty();
  const size_t V = size_t(weights_->config().vocab_size);
  std::vector<int32_t> drafted(size_t(n) * G, -1);
  std::vector<int32_t> accepted(size_t(n), 0), next(size_t(n), 0);

  // A round writes positions cache_len .. cache_len + g: all inside the pages reserved at admission, since
  // overshoot_ covers any gamma. Checked, because a write past them would land in another request's pages.
  for (Request* r : batch)
    if (r->cache_len + g >= int64_t(cache_->slot_pages(r->slot)) * cache_->shape().page_size)
      throw Error("internal: a gamma-" + std::to_string(g) + " round would write past the KV pages request " +
                  std::to_string(r->id) + " reserved");

  Device& d = *device_;
  d.mark(0);
  // With a 'match' verifier a sampling request's drafts are the draft's samples under the noise of their
  // positions, and its target tokens the target's samples (forward -> sample): verify_greedy then accepts
  // while they agree, and the emitted tokens are the autoregressive samples (docs/DSL.md, "Verifiers").
  // The drafted tokens never leave the device: each step's LM tokens are the next step's input and a
  // column of d_drafted_ ([n, G], -1 in the columns past g: never a target token, so acceptance stops at g).
  const size_t I4 = sizeof(int32_t);
  d.fill(d_drafted_.get(), 0xff, size_t(n) * G * I4);
  draft_steps(batch, g, rejection);
  d.mark(1);

  // Verification rewrites positions cache_len .. cache_len + g with the target's K/V. Its rows per sequence:
  // the pending token (from the host), then the g drafts (from d_drafted_).
  Rows rows;
  std::vector<int> lm_rows;
  std::vector<Request*> lm_reqs;
  for (int i = 0; i < n; ++i) {
    Request* r = batch[size_t(i)];
    for (int j = 0; j <= g; ++j) {
      lm_rows.push_back(rows.size());
      lm_reqs.push_back(r);
      rows.push(j == 0 ? r->pending : -1, r->slot, r->cache_len + j);
    }
  }
  std::copy(rows.token.begin(), rows.token.end(), tokens_.begin());
  d.upload(d_tokens_.get(), tokens_.data(), size_t(rows.size()) * I4);
  d.copy_2d(d_tokens_.get() + 1, size_t(g + 1) * I4, d_drafted_.get(), G * I4, size_t(g) * I4, size_t(n));
  forward(rows, StepKind::Verify, lm_rows, lm_reqs, true);
  d.copy_2d(d_target_.get(), (G + 1) * I4, d_argmax_.get(), size_t(g + 1) * I4, size_t(g + 1) * I4, size_t(n));
  timed(StepKind::Verify, KernelClass::Other, "verify_greedy", [&] {
    return module_->verify_greedy(d_target_.get(), d_drafted_.get(), d_accepted_.get(), d_next_.get(), n, d.stream());
  });
  // A 'sample' verifier: each sampling request's drafts, sampled from the draft's distribution q, are
  // accepted or resampled by the module's rule against the target's p (greedy requests keep the argmax
  // verification above). One sequence a call: its verified rows are contiguous in logits_.
  if (rejection) {
    for (int i = 0; i < n; ++i) stage_sampling(size_t(i), *batch[size_t(i)], int32_t(batch[size_t(i)]->cache_len));
    upload_sampling(n);
    for (int i = 0; i < n; ++i) {
      if (batch[size_t(i)]->opts.sampling.greedy()) continue;
      const size_t k = size_t(i);
      timed(StepKind::Verify, KernelClass::Other, "verify_sample", [&] {
        return module_->verify_sample(logits_.get() + k * size_t(g + 1) * V, draft_logits_.get() + k * G * V, d_drafted_.get() + k * G,
                                      d_temperature_.get() + k, d_top_k_.get() + k, d_top_p_.get() + k, d_min_p_.get() + k,
                                      d_seed_.get() + 2 * k, d_pos_.get() + k, d_accepted_.get() + k, d_next_.get() + k, g, 1,
                                      d.stream());
      });
    }
  }
  // The round's one wait for the device: what the host needs to emit and schedule.
  d.download(accepted.data(), d_accepted_.get(), size_t(n) * I4);
  d.download(next.data(), d_next_.get(), size_t(n) * I4);
  d.download(drafted.data(), d_drafted_.get(), size_t(n) * G * I4);
  if (logits_kept_) d.download(host_logits_.data(), logits_.get(), size_t(rows.size()) * V * sizeof(float));
  d.mark(2);
  d.synchronize();
  // The phases in device time (Device::mark): the host only queues them, so its clock would time the launches.
  const double draft_s = d.seconds(0, 1), verify_s = d.seconds(1, 2);

  for (int i = 0; i < n; ++i) {
    Request* r = batch[size_t(i)];
    int a = accepted[size_t(i)];
    if (a < 0 || a > g) throw Error("kernel md_verify_greedy returned accepted " + std::to_string(a) + " outside 0.." + std::to_string(g));
    if (next[size_t(i)] < 0 || size_t(next[size_t(i)]) >= V)
      throw Error("verification returned next token " + std::to_string(next[size_t(i)]) + ", outside the vocabulary");
    r->stats.rounds += 1;
    r->stats.drafted += g;
    r->stats.accepted += a;
    r->stats.draft_s += draft_s;
    r->stats.verify_s += verify_s;
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
  tuner_.record(n, g, accepted.data(), draft_s, verify_s);
  ++stats_.rounds;
  ++stats_.bucket_rounds[last_bucket_];
  ++stats_.gamma_rounds[g];
  stats_.draft_s += draft_s;
  stats_.verify_s += verify_s;
}

// The draft's steps differ only in positions and lengths (their tokens stay on the device): all g steps'
// row data go up at once, before them (d_draft_rows_: per step, positions then lengths), and each step
// copies its own into the pass's buffers on the device. Unless a request samples (md_sample's arguments go
// up per step), the steps then read nothing from the host, so where the device captures work they run as
// one graph per (sequences, gamma, bucket), captured the second time that shape comes and replayed after:
// g x layers x ~15 launches become one.
void Engine::draft_steps(std::vector<Request*>& batch, int g, bool rejection) {
  Device& d = *device_;
  const int n = int(batch.size());
  const int G = module_->manifest().gamma;
  const size_t V = size_t(weights_->config().vocab_size), I4 = sizeof(int32_t);
  const size_t B = seq_len_.size(), stride = size_t(n) + B;
  std::vector<int> all;
  std::vector<Rows> steps(static_cast<size_t>(g));
  bool sampling = false;
  for (int i = 0; i < n; ++i) {
    all.push_back(i);
    sampling = sampling || !batch[size_t(i)]->opts.sampling.greedy();
  }
  for (int j = 0; j < g; ++j) {
    Rows& rows = steps[size_t(j)];
    for (const Request* r : batch) rows.push(j == 0 ? r->pending : -1, r->slot, r->cache_len + j);
    int32_t* pos = draft_rows_.data() + size_t(j) * stride;
    std::copy(rows.pos.begin(), rows.pos.end(), pos);
    lengths_of(rows, pos + n);
  }
  std::copy(steps[0].slot.begin(), steps[0].slot.end(), row_seq_.begin());
  std::copy(steps[0].token.begin(), steps[0].token.end(), tokens_.begin());
  d.upload(d_row_seq_.get(), row_seq_.data(), size_t(n) * I4);
  d.upload(d_tokens_.get(), tokens_.data(), size_t(n) * I4);
  d.upload(d_draft_rows_.get(), draft_rows_.data(), size_t(g) * stride * I4);
  sync_pass_inputs();
  auto run = [&] {
    for (int j = 0; j < g; ++j) {
      const int32_t* step = d_draft_rows_.get() + size_t(j) * stride;
      d.copy(d_row_pos_.get(), step, size_t(n) * I4);
      d.copy(d_seq_len_.get(), step + n, B * I4);
      if (j > 0) d.copy(d_tokens_.get(), d_argmax_.get(), size_t(n) * I4);
      forward(steps[size_t(j)], StepKind::Draft, all, batch, true, true);
      d.copy_2d(d_drafted_.get() + j, G * I4, d_argmax_.get(), I4, I4, size_t(n));
      if (rejection)
        for (int i = 0; i < n; ++i)
          if (!batch[size_t(i)]->opts.sampling.greedy())
            d.copy(draft_logits_.get() + (size_t(i) * G + j) * V, logits_.get() + size_t(i) * V, V * sizeof(float));
    }
  };
  if (sampling || !captures_drafts()) return run();
  const BucketKernels* bk = module_->bucket_for(n, n);
  if (!bk) throw Error("no batch bucket holds " + std::to_string(n) + " sequences and rows");
  const auto key = std::make_tuple(n, g, bk->bucket);
  if (draft_graphs_.size() >= 64 && !draft_graphs_.count(key)) draft_graphs_.clear();  // bounded: batch sizes change slowly
  DraftGraph& dg = draft_graphs_[key];
  if (!dg.graph) {
    if (!dg.ran) {
      dg.ran = true;
      return run();
    }
    // A capture that fails (the device refuses something a step does) turns capture off, saying why in
    // info_json; this round and later ones run the steps uncaptured, which are the same work.
    d.begin_capture();
    try {
      run();
      dg.graph.emplace(d, d.end_capture());
    } catch (const Error& e) {
      d.abort_capture();
      graphs_off_ = e.what();
      draft_graphs_.clear();
      return run();
    }
    ++stats_.graph_captures;
  }
  d.launch_graph(dg.graph->get());
  ++stats_.graph_replays;
}

int Engine::lengths_of(const Rows& rows, int32_t* len) const {
  std::fill(len, len + seq_len_.size(), 0);
  int seqs = 0;
  for (int i = 0; i < rows.size(); ++i) {
    int32_t& l = len[rows.slot[size_t(i)]];
    if (l == 0) ++seqs;
    l = std::max(l, rows.pos[size_t(i)] + 1);
  }
  return seqs;
}

void Engine::sync_pass_inputs() {
  Device& d = *device_;
  if (params_dirty_) {
    d.upload(d_target_params_.get(), target_params_.data(), target_params_.size() * sizeof(float));
    d.upload(d_draft_params_.get(), draft_params_.data(), draft_params_.size() * sizeof(float));
    params_dirty_ = false;
  }
  cache_->device_page_table();
}

void Engine::forward(const Rows& rows, StepKind kind, const std::vector<int>& lm_rows, const std::vector<Request*>& lm_reqs,
                     bool tokens_on_device, bool rows_on_device) {
  const bool draft = kind == StepKind::Draft;
  using K = KernelClass;
  const int R = rows.size();
  if (R == 0) return;
  const int seqs = lengths_of(rows, seq_len_.data());
  const BucketKernels* bk = module_->bucket_for(seqs, R);
  if (!bk)
    throw Error("no batch bucket holds " + std::to_string(seqs) + " sequences and " + std::to_string(R) + " rows");
  last_bucket_ = bk->bucket;
  Device& d = *device_;
  void* const st = d.stream();
  const size_t I4 = sizeof(int32_t);
  if (!tokens_on_device) {
    std::copy(rows.token.begin(), rows.token.end(), tokens_.begin());
    d.upload(d_tokens_.get(), tokens_.data(), size_t(R) * I4);
  }
  if (!rows_on_device) {
    std::copy(rows.slot.begin(), rows.slot.end(), row_seq_.begin());
    std::copy(rows.pos.begin(), rows.pos.end(), row_pos_.begin());
    d.upload(d_row_seq_.get(), row_seq_.data(), size_t(R) * I4);
    d.upload(d_row_pos_.get(), row_pos_.data(), size_t(R) * I4);
    d.upload(d_seq_len_.get(), seq_len_.data(), seq_len_.size() * I4);
    sync_pass_inputs();
  }
  const int32_t* page_table = cache_->device_page_table();

  const ModelConfig& c = weights_->config();
  // The pass's runtime params: kernels read them from device memory (sync_pass_inputs).
  DeviceBuffer<float>& dev_params = draft ? d_draft_params_ : d_target_params_;
  const std::vector<float>& host_params = draft ? draft_params_ : target_params_;
  const float* params = host_params.empty() ? nullptr : dev_params.get();
  md_attn_fn attn = draft ? bk->attn_draft : bk->attn_target;
  float *x = x_.get(), *h = h_.get(), *q = q_.get(), *k = k_.get(), *v = v_.get(), *att = attn_.get(), *o = o_.get();
  float *gate = gate_.get(), *up = up_.get(), *act = act_.get(), *down = down_.get();
  timed(kind, K::Other, "embed", [&] { return module_->embed(weights_->embed(), d_tokens_.get(), x, R, st); });
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = weights_->layers()[size_t(l)];
    timed(kind, K::NormRope, "rmsnorm", [&] { return module_->rmsnorm(x, w.input_norm, h, R, st); });
    timed(kind, K::Gemm, "gemm_q", [&] { return bk->gemm_q(h, w.q, w.q_bias, q, R, st); });
    timed(kind, K::Gemm, "gemm_kv", [&] { return bk->gemm_kv(h, w.k, w.k_bias, k, R, st); });
    timed(kind, K::Gemm, "gemm_kv", [&] { return bk->gemm_kv(h, w.v, w.v_bias, v, R, st); });
    timed(kind, K::NormRope, "rope_append", [&] {
      return module_->rope_append(q, k, v, cache_->k_layer(l), cache_->v_layer(l), page_table, cache_->shape().pages_per_seq,
                                  d_row_seq_.get(), d_row_pos_.get(), R, st);
    });
    md_attn_args a;
    a.q = q;
    a.k_cache = cache_->k_layer(l);
    a.v_cache = cache_->v_layer(l);
    a.page_table = page_table;
    a.pages_per_seq = cache_->shape().pages_per_seq;
    a.row_seq = d_row_seq_.get();
    a.row_pos = d_row_pos_.get();
    a.seq_len = d_seq_len_.get();
    a.rows = R;
    a.params = params;
    a.out = att;
    a.workspace = attn_ws_.get();
    a.stream = st;
    timed(kind, K::Attention, draft ? "attn_draft" : "attn_target", [&] { return attn(&a); });
    timed(kind, K::Gemm, "gemm_o", [&] { return bk->gemm_o(att, w.o, nullptr, o, R, st); });
    timed(kind, K::NormRope, "add_rmsnorm", [&] { return module_->add_rmsnorm(x, o, w.post_norm, h, R, st); });
    timed(kind, K::Gemm, "gemm_gate_up", [&] { return bk->gemm_gate_up(h, w.gate, nullptr, gate, R, st); });
    timed(kind, K::Gemm, "gemm_gate_up", [&] { return bk->gemm_gate_up(h, w.up, nullptr, up, R, st); });
    timed(kind, K::Other, "swiglu", [&] { return module_->swiglu(gate, up, act, R, st); });
    timed(kind, K::Gemm, "gemm_down", [&] { return bk->gemm_down(act, w.down, nullptr, down, R, st); });
    timed(kind, K::Other, "add", [&] { return module_->add(x, down, R, st); });
  }
  // Only the rows that need logits go through the final norm and the LM head (row invariance makes the
  // gathered rows' results identical to computing all of them): runs of consecutive rows are one copy
  // each, and when the LM rows are all the rows in order (draft and verify passes) x is used as it is.
  const size_t H = size_t(c.hidden_size);
  const int L = int(lm_rows.size());
  if (L == 0) return;
  const float* lm_in = x;
  timed(kind, K::Other, "gather", [&] {
    bool identity = L == R;
    for (int i = 0; identity && i < L; ++i) identity = lm_rows[size_t(i)] == i;
    if (identity) return 0;
    for (int i = 0; i < L;) {
      int e = i + 1;
      while (e < L && lm_rows[size_t(e)] == lm_rows[size_t(e - 1)] + 1) ++e;
      d.copy(lm_in_.get() + size_t(i) * H, x + size_t(lm_rows[size_t(i)]) * H, size_t(e - i) * H * sizeof(float));
      i = e;
    }
    lm_in = lm_in_.get();
    return 0;
  });
  timed(kind, K::NormRope, "rmsnorm", [&] { return module_->rmsnorm(lm_in, weights_->final_norm(), h, L, st); });
  // The draft's logits are never emitted: its tokens only. Sampled rows need them whichever the pass; a
  // target pass writes them when any of its rows' requests keeps its logits (read back then).
  bool sampling = false, keep = false;
  for (const Request* r : lm_reqs) {
    sampling = sampling || !r->opts.sampling.greedy();
    keep = keep || keeps_logits(*r);
  }
  logits_kept_ = keep && !draft;
  float* logits = logits_kept_ || sampling ? logits_.get() : nullptr;
  timed(kind, K::Gemm, "lm_head_argmax", [&] { return bk->lm_head_argmax(h, weights_->lm_head(), logits, d_argmax_.get(), L, st); });
  if (sampling) sample(kind, rows, lm_rows, lm_reqs);
}

void Engine::read_back(int lm) {
  Device& d = *device_;
  d.download(argmax_.data(), d_argmax_.get(), size_t(lm) * sizeof(int32_t));
  if (logits_kept_)
    d.download(host_logits_.data(), logits_.get(), size_t(lm) * size_t(weights_->config().vocab_size) * sizeof(float));
  d.synchronize();
}

void Engine::stage_sampling(size_t i, const Request& r, int32_t pos) {
  const SamplingParams& sp = r.opts.sampling;
  s_temperature_[i] = sp.temperature;
  s_top_k_[i] = sp.top_k;
  s_top_p_[i] = sp.top_p;
  s_min_p_[i] = sp.min_p;
  s_seed_[2 * i] = uint32_t(r.seed);
  s_seed_[2 * i + 1] = uint32_t(r.seed >> 32);
  s_pos_[i] = pos;
}

void Engine::upload_sampling(int n) {
  Device& d = *device_;
  const size_t N = size_t(n);
  d.upload(d_temperature_.get(), s_temperature_.data(), N * sizeof(float));
  d.upload(d_top_k_.get(), s_top_k_.data(), N * sizeof(int32_t));
  d.upload(d_top_p_.get(), s_top_p_.data(), N * sizeof(float));
  d.upload(d_min_p_.get(), s_min_p_.data(), N * sizeof(float));
  d.upload(d_seed_.get(), s_seed_.data(), 2 * N * sizeof(uint32_t));
  d.upload(d_pos_.get(), s_pos_.data(), N * sizeof(int32_t));
}

// Every LM row goes through md_sample once one samples: a greedy row's token is md_argmax's there, the
// token lm_head_argmax gave it (the kernel tests hold md_sample at temperature 0 to md_argmax).
void Engine::sample(StepKind kind, const Rows& rows, const std::vector<int>& lm_rows, const std::vector<Request*>& lm_reqs) {
  const int L = int(lm_rows.size());
  for (int i = 0; i < L; ++i) stage_sampling(size_t(i), *lm_reqs[size_t(i)], rows.pos[size_t(lm_rows[size_t(i)])]);
  upload_sampling(L);
  timed(kind, KernelClass::Other, "sample", [&] {
    return module_->sample(logits_.get(), d_temperature_.get(), d_top_k_.get(), d_top_p_.get(), d_min_p_.get(), d_seed_.get(),
                           d_pos_.get(), d_argmax_.get(), L, device_->stream());
  });
}

const float* Engine::lm_logits(size_t i) const {
  return host_logits_.empty() ? nullptr : host_logits_.data() + i * size_t(weights_->config().vocab_size);
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
  w.key("device").value(device_->name());
  // How the draft's steps run: "captured" (as device graphs, replayed; rounds where a request samples run
  // them uncaptured), "uncaptured" (the device has no capture, or the engine is eager), or
  // "uncaptured: <why a capture failed>".
  w.key("draftGraphs").value(captures_drafts() ? std::string("captured") : graphs_off_.empty() ? std::string("uncaptured") : "uncaptured: " + graphs_off_);
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
  else if (gamma_ == kGammaOff) w.value("off");
  else w.value(gamma_);
  w.key("gammaMax").value(m.gamma);
  w.key("prefillChunk").value(prefill_chunk_).key("stepTokens").value(step_tokens_).key("keepLogits").value(opts_.keep_logits);
  w.key("prefillFirst").value(opts_.prefill_first).key("eager").value(opts_.eager);
  w.end_object();
  w.key("freePages").value(cache_->free_pages());
  w.end_object();
  return w.str();
}

}  // namespace md
