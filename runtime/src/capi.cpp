// The C API: every entry point catches everything and reports through md_last_error().
#include "magicdec.h"

#include <cstring>
#include <string>

#include "device.h"
#include "engine.h"
#include "error.h"

namespace {

thread_local std::string g_last_error;

int fail(const std::string& msg) {
  g_last_error = msg;
  return -1;
}

template <class F>
auto guarded(F&& f, decltype(f()) on_error) -> decltype(f()) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    fail("out of memory");
  } catch (const std::exception& e) {
    fail(e.what());
  } catch (...) {
    fail("unknown error");
  }
  return on_error;
}

}  // namespace

struct md_engine {
  std::unique_ptr<md::Engine> engine;
  std::string info;
};

namespace {

/** The C API's spellings of gamma 'auto' and 'off' as the engine's, and back. */
int engine_gamma(int32_t g) { return g == MD_GAMMA_AUTO ? md::kGammaAuto : g == MD_GAMMA_OFF ? md::kGammaOff : g; }
int32_t api_gamma(int g) { return g == md::kGammaAuto ? MD_GAMMA_AUTO : g == md::kGammaOff ? MD_GAMMA_OFF : g; }

md::Engine& engine_of(md_engine* e) {
  if (!e || !e->engine) throw md::Error("engine is NULL");
  return *e->engine;
}

const md::Request& request_of(md_engine* e, int64_t id) {
  const md::Request* r = engine_of(e).request(id);
  if (!r) throw md::Error("request " + std::to_string(id) + " is unknown (never added, or released)");
  return *r;
}

/** Counts the failed requests among a step's events; the first one's "request <id>: <error>" goes to *first. */
int count_failures(const std::vector<md::StepEvent>& events, std::string* first) {
  int n = 0;
  for (const md::StepEvent& ev : events) {
    if (ev.error.empty()) continue;
    if (first->empty()) *first = "request " + std::to_string(ev.id) + ": " + ev.error;
    ++n;
  }
  return n;
}

/** The message for `n` failed requests, the first described by `first`. */
std::string failure_message(int n, const std::string& first) {
  return n == 1 ? first : first + " (" + std::to_string(n) + " requests failed)";
}

}  // namespace

extern "C" {

const char* md_last_error(void) { return g_last_error.c_str(); }

void md_engine_options_default(md_engine_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof *o);
  o->mode = MD_MODE_SPEC;
}

void md_request_options_default(md_request_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof *o);
  o->max_tokens = 16;
  o->top_p = 1.0f;
}

md_engine* md_engine_create(const char* model_dir, const char* module_path, const md_engine_options* opts) {
  return guarded(
      [&]() -> md_engine* {
        if (!model_dir) throw md::Error("model_dir is NULL");
        if (!module_path) throw md::Error("module_path is NULL");
        md_engine_options o;
        md_engine_options_default(&o);
        if (opts) o = *opts;
        if (o.mode != MD_MODE_AR && o.mode != MD_MODE_SPEC)
          throw md::Error("option mode: " + std::to_string(o.mode) + " is neither MD_MODE_AR (0) nor MD_MODE_SPEC (1)");
        md::EngineOptions eo;
        eo.max_batch = o.max_batch;
        eo.kv_pages = o.kv_pages;
        eo.mode = o.mode == MD_MODE_AR ? md::Mode::AR : md::Mode::Spec;
        eo.gamma = engine_gamma(o.gamma);
        eo.prefill_chunk = o.prefill_chunk;
        eo.keep_logits = o.keep_logits != 0;
        eo.step_tokens = o.step_tokens;
        eo.prefill_first = o.prefill_first != 0;
        eo.eager = o.eager != 0;
        auto h = std::make_unique<md_engine>();
        h->engine = std::make_unique<md::Engine>(model_dir, module_path, eo);
        return h.release();
      },
      nullptr);
}

void md_engine_destroy(md_engine* e) { delete e; }

const char* md_engine_info(md_engine* e) {
  return guarded(
      [&]() -> const char* {
        e->info = engine_of(e).info_json();
        return e->info.c_str();
      },
      nullptr);
}

int md_engine_set_param(md_engine* e, const char* pass, const char* key, float value) {
  return guarded(
      [&]() {
        if (!pass || !key) throw md::Error("set_param: pass and key must not be NULL");
        engine_of(e).set_param(pass, key, value);
        return 0;
      },
      -1);
}

int md_engine_set_gamma(md_engine* e, int32_t gamma) {
  return guarded(
      [&]() {
        engine_of(e).set_gamma(engine_gamma(gamma));
        return 0;
      },
      -1);
}

int32_t md_engine_gamma_rounds(md_engine* e, int64_t* out, int32_t cap) {
  return guarded(
      [&]() -> int32_t {
        md::Engine& eng = engine_of(e);
        if (cap > 0 && !out) throw md::Error("md_engine_gamma_rounds: out is NULL");
        const int32_t n = eng.module().manifest().gamma + 1;
        for (int32_t g = 0; g < cap; ++g) {
          auto it = eng.stats().gamma_rounds.find(g);
          out[g] = it == eng.stats().gamma_rounds.end() ? 0 : it->second;
        }
        return n;
      },
      -1);
}

int32_t md_engine_kernel_times(md_engine* e, double* out, int32_t cap) {
  static_assert(MD_STEP_KINDS == md::kStepKinds && MD_KERNEL_CLASSES == md::kKernelClasses, "kernel-time layout");
  return guarded(
      [&]() -> int32_t {
        md::Engine& eng = engine_of(e);
        if (cap > 0 && !out) throw md::Error("md_engine_kernel_times: out is NULL");
        const int32_t n = md::kStepKinds * md::kKernelClasses;
        for (int32_t i = 0; i < cap && i < n; ++i) out[i] = eng.stats().kernel_s[i / md::kKernelClasses][i % md::kKernelClasses];
        return n;
      },
      -1);
}

int64_t md_engine_add_request(md_engine* e, const int32_t* prompt, int32_t prompt_len, const md_request_options* opts) {
  return guarded(
      [&]() -> int64_t {
        if (prompt_len < 0 || (prompt_len > 0 && !prompt)) throw md::Error("request: prompt is NULL or its length negative");
        md::RequestOptions ro;
        if (opts) {
          ro.max_tokens = opts->max_tokens;
          if (opts->num_stop_tokens < 0 || (opts->num_stop_tokens > 0 && !opts->stop_tokens))
            throw md::Error("request: stop_tokens is NULL or num_stop_tokens negative");
          ro.stop_tokens.assign(opts->stop_tokens, opts->stop_tokens + opts->num_stop_tokens);
          ro.ignore_eos = opts->ignore_eos != 0;
          ro.sampling.temperature = opts->temperature;
          ro.sampling.top_k = opts->top_k;
          ro.sampling.top_p = opts->top_p;
          ro.sampling.min_p = opts->min_p;
          ro.has_seed = opts->has_seed != 0;
          ro.seed = opts->seed;
          ro.keep_logits = opts->keep_logits != 0;
        }
        return engine_of(e).add_request(std::vector<int32_t>(prompt, prompt + prompt_len), ro);
      },
      int64_t(-1));
}

int md_engine_step(md_engine* e) {
  return guarded(
      [&]() {
        md::Engine& eng = engine_of(e);
        std::string first;
        const int failed = count_failures(eng.step(), &first);
        return failed ? fail(failure_message(failed, first)) : eng.live();
      },
      -1);
}

int md_engine_cancel(md_engine* e, int64_t id) {
  return guarded(
      [&]() {
        if (!engine_of(e).cancel(id)) throw md::Error("cancel: request " + std::to_string(id) + " was never issued by this engine");
        return 0;
      },
      -1);
}

int md_engine_run(md_engine* e) {
  return guarded(
      [&]() {
        md::Engine& eng = engine_of(e);
        // A failed request does not stop the others: step until none is live, then report the failures.
        std::string first;
        int failed = 0;
        while (eng.live() > 0) failed += count_failures(eng.step(), &first);
        return failed ? fail(failure_message(failed, first)) : 0;
      },
      -1);
}

int32_t md_request_tokens(md_engine* e, int64_t id, int32_t* out, int32_t cap) {
  return guarded(
      [&]() -> int32_t {
        const md::Request& r = request_of(e, id);
        int32_t n = int32_t(r.output.size());
        if (cap > 0 && !out) throw md::Error("md_request_tokens: out is NULL");
        for (int32_t i = 0; i < n && i < cap; ++i) out[i] = r.output[size_t(i)];
        return n;
      },
      -1);
}

int32_t md_request_logits(md_engine* e, int64_t id, int32_t index, float* out, int32_t cap) {
  return guarded(
      [&]() -> int32_t {
        md::Engine& eng = engine_of(e);
        const md::Request& r = request_of(e, id);
        int32_t V = eng.config().vocab_size;
        if (!eng.keeps_logits(r))
          throw md::Error("md_request_logits: neither the engine nor request " + std::to_string(id) + " keeps logits (keep_logits)");
        if (index < 0 || size_t(index) >= r.output.size())
          throw md::Error("md_request_logits: index " + std::to_string(index) + " outside [0, " +
                          std::to_string(r.output.size()) + ")");
        if (!out || cap < V) throw md::Error("md_request_logits: out needs room for " + std::to_string(V) + " floats");
        std::memcpy(out, r.logits.data() + size_t(index) * size_t(V), size_t(V) * sizeof(float));
        return V;
      },
      -1);
}

int md_request_seed(md_engine* e, int64_t id, uint64_t* out) {
  return guarded(
      [&]() {
        const md::Request& r = request_of(e, id);
        if (!out) throw md::Error("md_request_seed: out is NULL");
        *out = r.seed;
        return 0;
      },
      -1);
}

const char* md_request_error(md_engine* e, int64_t id) {
  return guarded([&]() -> const char* { return request_of(e, id).error.c_str(); }, nullptr);
}

int md_request_stats_get(md_engine* e, int64_t id, md_request_stats* out) {
  return guarded(
      [&]() {
        const md::Request& r = request_of(e, id);
        if (!out) throw md::Error("md_request_stats_get: out is NULL");
        const md::RequestStats& s = r.stats;
        out->state = int32_t(r.state);
        out->finish_reason = int32_t(r.reason);
        out->prompt_tokens = s.prompt_tokens;
        out->generated = s.generated;
        out->rounds = s.rounds;
        out->drafted = s.drafted;
        out->accepted = s.accepted;
        out->acceptance = s.acceptance();
        out->tokens_per_round = s.tokens_per_round();
        out->prefill_s = s.prefill_s;
        out->draft_s = s.draft_s;
        out->verify_s = s.verify_s;
        out->decode_s = s.decode_s;
        return 0;
      },
      -1);
}

int md_engine_stats_get(md_engine* e, md_engine_stats* out) {
  return guarded(
      [&]() {
        md::Engine& eng = engine_of(e);
        if (!out) throw md::Error("md_engine_stats_get: out is NULL");
        const md::EngineStats& s = eng.stats();
        out->steps = s.steps;
        out->prefill_steps = s.prefill_steps;
        out->rounds = s.rounds;
        out->ar_steps = s.ar_steps;
        out->prefill_tokens = s.prefill_tokens;
        out->generated = s.generated;
        out->drafted = s.drafted;
        out->accepted = s.accepted;
        out->acceptance = s.drafted ? double(s.accepted) / double(s.drafted) : 0;
        out->prefill_s = s.prefill_s;
        out->draft_s = s.draft_s;
        out->verify_s = s.verify_s;
        out->decode_s = s.decode_s;
        out->free_pages = eng.free_pages();
        out->live_requests = eng.live();
        out->gamma = api_gamma(eng.gamma());
        out->mean_gamma = s.mean_gamma();
        out->graph_captures = s.graph_captures;
        out->graph_replays = s.graph_replays;
        return 0;
      },
      -1);
}

int md_request_release(md_engine* e, int64_t id) {
  return guarded(
      [&]() {
        if (!engine_of(e).release(id)) throw md::Error("request " + std::to_string(id) + " is unknown or still live");
        return 0;
      },
      -1);
}

int md_model_check(const char* model_dir, const char* dtype) {
  return guarded(
      [&]() {
        if (!model_dir || !dtype) throw md::Error("md_model_check: model_dir and dtype must not be NULL");
        md::DType t;
        if (!md::parse_storage_dtype(dtype, &t))
          throw md::Error(std::string("md_model_check: dtype '") + dtype + "' is not bf16, fp16 or fp32");
        md::ModelWeights::load(model_dir, t);
        return 0;
      },
      -1);
}

int md_cuda_available(void) {
  return guarded(
      [&]() {
        std::string why;
        if (md::cuda_available(&why)) return 1;
        g_last_error = why;
        return 0;
      },
      0);
}

}  // extern "C"
