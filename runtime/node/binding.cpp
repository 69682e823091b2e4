// Node-API binding (node-addon-api). Model loading and every engine step are jobs on libuv's worker pool
// that resolve Promises, each run on the one thread that runs every engine's kernels (kernel_thread); the
// JS thread only queues requests and reads results. runtime/node/index.ts wraps this into generate() and
// an async iterator of tokens.
#include <napi.h>

#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "engine.h"
#include "error.h"

namespace {

/**
 * A thread that runs jobs handed to it, one at a time, while the caller waits. OpenMP keeps a thread team
 * per calling thread, so engine steps run on whichever of libuv's workers picks them up (or on one thread
 * per engine, while several engines live) would keep several teams on the same cores; with more threads
 * than CPUs libgomp stops spinning between parallel regions, and every kernel call then pays for waking
 * its team (on 2 cores: AR decode 1.3x slower, a draft step 1.4x, a tiny model's step 3x).
 */
class KernelThread {
 public:
  KernelThread() : thread_([this] { loop(); }) {}
  KernelThread(const KernelThread&) = delete;
  KernelThread& operator=(const KernelThread&) = delete;

  /** Runs fn on the thread and waits for it; rethrows what it threw. */
  void run(const std::function<void()>& fn) {
    bool done = false;
    std::exception_ptr error;
    std::unique_lock<std::mutex> lock(mu_);
    jobs_.push_back([&] {
      try {
        fn();
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> l(mu_);
      done = true;
      finished_.notify_all();
    });
    wake_.notify_one();
    finished_.wait(lock, [&] { return done; });
    if (error) std::rethrow_exception(error);
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return !jobs_.empty(); });
      std::function<void()> job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable wake_, finished_;
  std::deque<std::function<void()>> jobs_;
  std::thread thread_;  // last: starts once the members above exist
};

/**
 * The process's one thread for engine creation and steps, so one OpenMP team serves every engine; engines
 * take turns, as they would on the same cores anyway. Never destroyed: it lives as long as the process.
 */
KernelThread& kernel_thread() {
  static KernelThread* const t = new KernelThread();
  return *t;
}

// The engine and the lock that serialises its use between a step and the JS thread's getters.
// add_request needs no lock (the engine queues it thread-safely).
struct Shared {
  std::unique_ptr<md::Engine> engine;
  std::mutex mu;
};

struct FinishedStats {
  int64_t id;
  md::RequestStats stats;
  uint64_t seed;
};

Napi::Object stats_object(Napi::Env env, const md::RequestStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("promptTokens", s.prompt_tokens);
  o.Set("generated", s.generated);
  o.Set("rounds", s.rounds);
  o.Set("drafted", s.drafted);
  o.Set("accepted", s.accepted);
  o.Set("acceptance", s.acceptance());
  o.Set("tokensPerRound", s.tokens_per_round());
  o.Set("prefillS", s.prefill_s);
  o.Set("draftS", s.draft_s);
  o.Set("verifyS", s.verify_s);
  o.Set("decodeS", s.decode_s);
  return o;
}

// Whether a JS number is an int32. Checked before any cast: converting a double outside the int32 range
// (or NaN) to int32_t is undefined behaviour.
bool is_int32(double d) { return d >= -2147483648.0 && d <= 2147483647.0 && d == std::floor(d); }

int32_t int_option(const Napi::Object& o, const char* key, int32_t dflt) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return dflt;
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw md::Error(std::string("option ") + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!is_int32(d)) throw md::Error(std::string("option ") + key + " must be an integer in the int32 range, got " + Napi::Number::New(o.Env(), d).ToString().Utf8Value());
  return int32_t(d);
}

// A float option: any number (NaN and out-of-range values reach the engine's own checks, which name them).
float float_option(const Napi::Object& o, const char* key, float dflt) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return dflt;
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw md::Error(std::string("option ") + key + " must be a number");
  return v.As<Napi::Number>().FloatValue();
}

// gamma: a number (1..module gamma), 'auto' or 'off'.
int32_t gamma_value(const Napi::Value& v, const char* what) {
  if (v.IsString() && v.As<Napi::String>().Utf8Value() == "auto") return md::kGammaAuto;
  if (v.IsString() && v.As<Napi::String>().Utf8Value() == "off") return md::kGammaOff;
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  // kGammaAuto and kGammaOff are the engine's spellings of 'auto' and 'off', not numbers JS may pass.
  if (!is_int32(d) || d == md::kGammaAuto || d == md::kGammaOff)
    throw md::Error(std::string(what) + " must be 'auto', 'off' or an integer from 1 to the module's gamma, got " + v.ToString().Utf8Value());
  return int32_t(d);
}

std::vector<int32_t> int_array(const Napi::Value& v, const char* what) {
  std::vector<int32_t> out;
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    Napi::Int32Array a = v.As<Napi::Int32Array>();
    out.assign(a.Data(), a.Data() + a.ElementLength());
  } else if (v.IsArray()) {
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value x = a.Get(i);
      if (!x.IsNumber()) throw md::Error(std::string(what) + "[" + std::to_string(i) + "] is not a number");
      double d = x.As<Napi::Number>().DoubleValue();
      if (!is_int32(d)) throw md::Error(std::string(what) + "[" + std::to_string(i) + "] is not an int32");
      out.push_back(int32_t(d));
    }
  } else {
    throw md::Error(std::string(what) + " must be an array of integers or an Int32Array");
  }
  return out;
}

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeEngine",
                       {InstanceMethod<&EngineWrap::AddRequest>("addRequest"), InstanceMethod<&EngineWrap::Step>("step"),
                        InstanceMethod<&EngineWrap::Live>("live"), InstanceMethod<&EngineWrap::Stats>("stats"),
                        InstanceMethod<&EngineWrap::Info>("info"), InstanceMethod<&EngineWrap::SetParam>("setParam"),
                        InstanceMethod<&EngineWrap::SetGamma>("setGamma"),
                        InstanceMethod<&EngineWrap::Cancel>("cancel"),
                        InstanceMethod<&EngineWrap::Close>("close")});
  }

  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "NativeEngine is created by create(), not with new");
    shared_ = *info[0].As<Napi::External<std::shared_ptr<Shared>>>().Data();
  }

 private:
  std::shared_ptr<Shared> get(Napi::Env env) {
    if (!shared_) throw Napi::Error::New(env, "engine is closed");
    return shared_;
  }

  Napi::Value AddRequest(const Napi::CallbackInfo& info) {
    auto sh = get(info.Env());
    try {
      std::vector<int32_t> prompt = int_array(info[0], "prompt");
      md::RequestOptions ro;
      if (info.Length() > 1 && info[1].IsObject()) {
        Napi::Object o = info[1].As<Napi::Object>();
        ro.max_tokens = int_option(o, "maxTokens", ro.max_tokens);
        if (o.Has("stopTokens") && !o.Get("stopTokens").IsUndefined()) ro.stop_tokens = int_array(o.Get("stopTokens"), "stopTokens");
        if (o.Has("ignoreEos")) ro.ignore_eos = o.Get("ignoreEos").ToBoolean().Value();
        if (o.Has("keepLogits")) ro.keep_logits = o.Get("keepLogits").ToBoolean().Value();
        ro.sampling.temperature = float_option(o, "temperature", ro.sampling.temperature);
        ro.sampling.top_k = int_option(o, "topK", ro.sampling.top_k);
        ro.sampling.top_p = float_option(o, "topP", ro.sampling.top_p);
        ro.sampling.min_p = float_option(o, "minP", ro.sampling.min_p);
        if (o.Has("seed") && !o.Get("seed").IsUndefined()) {
          Napi::Value v = o.Get("seed");
          const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
          // Seeds JavaScript holds exactly: integers in [0, 2^53).
          if (!(d >= 0 && d < 9007199254740992.0 && d == std::floor(d)))
            throw md::Error("option seed must be an integer in [0, 2^53), got " + v.ToString().Utf8Value());
          ro.has_seed = true;
          ro.seed = uint64_t(d);
        }
      }
      return Napi::Number::New(info.Env(), double(sh->engine->add_request(prompt, ro)));
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
  }

  class StepWorker : public Napi::AsyncWorker {
   public:
    StepWorker(Napi::Env env, std::shared_ptr<Shared> sh)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), sh_(std::move(sh)) {}
    Napi::Promise promise() { return deferred_.Promise(); }

    void Execute() override {
      try {
        kernel_thread().run([&] {
          std::lock_guard<std::mutex> lock(sh_->mu);
          events_ = sh_->engine->step();
          for (const md::StepEvent& ev : events_) {
            if (!ev.finished) continue;
            const md::Request* r = sh_->engine->request(ev.id);
            finished_.push_back({ev.id, r->stats, r->seed});
            sh_->engine->release(ev.id);  // everything about it now travels in the event
          }
          live_ = sh_->engine->live();
          queued_ = sh_->engine->queued();
        });
      } catch (const std::exception& e) {
        SetError(e.what());
      }
    }

    void OnOK() override {
      Napi::Env env = Env();
      Napi::Array arr = Napi::Array::New(env, events_.size());
      size_t f = 0;
      for (size_t i = 0; i < events_.size(); ++i) {
        const md::StepEvent& ev = events_[i];
        Napi::Object o = Napi::Object::New(env);
        o.Set("id", double(ev.id));
        Napi::Int32Array toks = Napi::Int32Array::New(env, ev.tokens.size());
        std::copy(ev.tokens.begin(), ev.tokens.end(), toks.Data());
        o.Set("tokens", toks);
        if (!ev.logits.empty()) {
          Napi::Float32Array lg = Napi::Float32Array::New(env, ev.logits.size());
          std::copy(ev.logits.begin(), ev.logits.end(), lg.Data());
          o.Set("logits", lg);
        }
        o.Set("finished", ev.finished);
        o.Set("reason", md::finish_reason_name(ev.reason));
        if (!ev.error.empty()) o.Set("error", ev.error);
        if (ev.finished && f < finished_.size() && finished_[f].id == ev.id) {
          o.Set("seed", double(finished_[f].seed));
          o.Set("stats", stats_object(env, finished_[f++].stats));
        }
        arr.Set(uint32_t(i), o);
      }
      Napi::Object result = Napi::Object::New(env);
      result.Set("events", arr);
      result.Set("live", live_);
      result.Set("queued", queued_);
      deferred_.Resolve(result);
    }
    void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

   private:
    Napi::Promise::Deferred deferred_;
    std::shared_ptr<Shared> sh_;
    std::vector<md::StepEvent> events_;
    std::vector<FinishedStats> finished_;
    int live_ = 0;
    int queued_ = 0;
  };

  Napi::Value Step(const Napi::CallbackInfo& info) {
    auto* w = new StepWorker(info.Env(), get(info.Env()));
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

  Napi::Value Live(const Napi::CallbackInfo& info) {
    auto sh = get(info.Env());
    std::lock_guard<std::mutex> lock(sh->mu);
    return Napi::Number::New(info.Env(), sh->engine->live());
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    auto sh = get(info.Env());
    std::lock_guard<std::mutex> lock(sh->mu);
    const md::EngineStats& s = sh->engine->stats();
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("steps", double(s.steps));
    o.Set("prefillSteps", double(s.prefill_steps));
    o.Set("rounds", double(s.rounds));
    o.Set("arSteps", double(s.ar_steps));
    o.Set("prefillTokens", double(s.prefill_tokens));
    o.Set("generated", double(s.generated));
    o.Set("drafted", double(s.drafted));
    o.Set("accepted", double(s.accepted));
    o.Set("acceptance", s.drafted ? double(s.accepted) / double(s.drafted) : 0.0);
    o.Set("prefillS", s.prefill_s);
    o.Set("draftS", s.draft_s);
    o.Set("verifyS", s.verify_s);
    o.Set("decodeS", s.decode_s);
    Napi::Object buckets = Napi::Object::New(env);
    for (auto& [b, n] : s.bucket_rounds) buckets.Set(std::to_string(b), double(n));
    o.Set("bucketRounds", buckets);
    Napi::Object gammas = Napi::Object::New(env);
    for (auto& [g, n] : s.gamma_rounds) gammas.Set(std::to_string(g), double(n));
    o.Set("gammaRounds", gammas);
    o.Set("meanGamma", s.mean_gamma());
    o.Set("graphCaptures", double(s.graph_captures));
    o.Set("graphReplays", double(s.graph_replays));
    // Seconds inside module kernels, by step kind and kernel class (md::EngineStats::kernel_s).
    static const char* const kinds[md::kStepKinds] = {"prefill", "ar", "draft", "verify"};
    static const char* const classes[md::kKernelClasses] = {"attention", "gemm", "normRope", "other"};
    Napi::Object kernels = Napi::Object::New(env);
    for (int k = 0; k < md::kStepKinds; ++k) {
      Napi::Object byClass = Napi::Object::New(env);
      for (int c = 0; c < md::kKernelClasses; ++c) byClass.Set(classes[c], s.kernel_s[k][c]);
      kernels.Set(kinds[k], byClass);
    }
    o.Set("kernelS", kernels);
    const int gamma = sh->engine->gamma();
    o.Set("gamma", gamma == md::kGammaAuto  ? Napi::Value(Napi::String::New(env, "auto"))
                   : gamma == md::kGammaOff ? Napi::Value(Napi::String::New(env, "off"))
                                            : Napi::Value(Napi::Number::New(env, gamma)));
    o.Set("acceptanceEstimate", sh->engine->gamma_tuner().acceptance());
    o.Set("freePages", sh->engine->free_pages());
    return o;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    auto sh = get(info.Env());
    std::lock_guard<std::mutex> lock(sh->mu);
    return Napi::String::New(info.Env(), sh->engine->info_json());
  }

  Napi::Value SetParam(const Napi::CallbackInfo& info) {
    auto sh = get(info.Env());
    if (info.Length() != 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber())
      throw Napi::TypeError::New(info.Env(), "setParam(pass: string, key: string, value: number)");
    std::lock_guard<std::mutex> lock(sh->mu);
    try {
      sh->engine->set_param(info[0].As<Napi::String>(), info[1].As<Napi::String>(),
                            info[2].As<Napi::Number>().FloatValue());
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    return info.Env().Undefined();
  }

  Napi::Value SetGamma(const Napi::CallbackInfo& info) {
    auto sh = get(info.Env());
    std::lock_guard<std::mutex> lock(sh->mu);
    try {
      if (info.Length() != 1) throw md::Error("setGamma(gamma: number | 'auto' | 'off')");
      sh->engine->set_gamma(gamma_value(info[0], "gamma"));
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    return info.Env().Undefined();
  }

  // cancel(id): applied at the next step; needs no lock (the engine records it thread-safely), so it never
  // waits for a step in flight. False for an id the engine never issued.
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    auto sh = get(info.Env());
    if (info.Length() != 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "cancel(id: number)");
    const double id = info[0].As<Napi::Number>().DoubleValue();
    if (!(id >= 1 && id <= 9007199254740991.0 && id == std::floor(id))) return Napi::Boolean::New(info.Env(), false);
    return Napi::Boolean::New(info.Env(), sh->engine->cancel(int64_t(id)));
  }

  // A step in flight keeps its own reference; the engine is freed when the last one lets go.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    shared_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<Shared> shared_;
};

struct AddonData {
  Napi::FunctionReference engine_ctor;
};

class CreateWorker : public Napi::AsyncWorker {
 public:
  CreateWorker(Napi::Env env, std::string model, std::string module, md::EngineOptions opts)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), model_(std::move(model)),
        module_(std::move(module)), opts_(opts) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      sh_ = std::make_shared<Shared>();
      kernel_thread().run([&] { sh_->engine = std::make_unique<md::Engine>(model_, module_, opts_); });
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    auto* ext = new std::shared_ptr<Shared>(sh_);
    Napi::External<std::shared_ptr<Shared>> handle =
        Napi::External<std::shared_ptr<Shared>>::New(env, ext, [](Napi::Env, std::shared_ptr<Shared>* p) { delete p; });
    deferred_.Resolve(env.GetInstanceData<AddonData>()->engine_ctor.New({handle}));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string model_, module_;
  md::EngineOptions opts_;
  std::shared_ptr<Shared> sh_;
};

// create(modelDir, modulePath, { maxBatch, kvPages, mode: 'ar' | 'spec', gamma: n | 'auto', prefillChunk, stepTokens, keepLogits, prefillFirst, eager })
Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throw Napi::TypeError::New(env, "create(modelDir: string, modulePath: string, options?: object)");
  md::EngineOptions o;
  try {
    if (info.Length() > 2 && info[2].IsObject()) {
      Napi::Object js = info[2].As<Napi::Object>();
      o.max_batch = int_option(js, "maxBatch", 0);
      o.kv_pages = int_option(js, "kvPages", 0);
      if (js.Has("gamma") && !js.Get("gamma").IsUndefined()) o.gamma = gamma_value(js.Get("gamma"), "option gamma");
      o.prefill_chunk = int_option(js, "prefillChunk", 0);
      o.step_tokens = int_option(js, "stepTokens", 0);
      if (js.Has("keepLogits")) o.keep_logits = js.Get("keepLogits").ToBoolean().Value();
      if (js.Has("prefillFirst")) o.prefill_first = js.Get("prefillFirst").ToBoolean().Value();
      if (js.Has("eager")) o.eager = js.Get("eager").ToBoolean().Value();
      if (js.Has("mode") && !js.Get("mode").IsUndefined()) {
        std::string mode = js.Get("mode").ToString();
        if (mode == "ar") o.mode = md::Mode::AR;
        else if (mode == "spec") o.mode = md::Mode::Spec;
        else throw md::Error("option mode must be 'ar' or 'spec', got '" + mode + "'");
      }
    }
  } catch (const md::Error& e) {
    throw Napi::Error::New(env, e.what());
  }
  auto* w = new CreateWorker(env, info[0].As<Napi::String>(), info[1].As<Napi::String>(), o);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

class CheckWorker : public Napi::AsyncWorker {
 public:
  CheckWorker(Napi::Env env, std::string dir, std::string dtype)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), dir_(std::move(dir)), dtype_(std::move(dtype)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      md::DType t;
      if (!md::parse_storage_dtype(dtype_, &t))
        throw md::Error("dtype '" + dtype_ + "' is not bf16, fp16 or fp32");
      auto w = md::ModelWeights::load(dir_, t);
      const md::ModelConfig& c = w->config();
      summary_ = c.architecture + " " + std::to_string(c.num_layers) + "x" + std::to_string(c.hidden_size);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Napi::String::New(Env(), summary_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string dir_, dtype_, summary_;
};

// checkModel(modelDir, dtype): validates config.json and every tensor; resolves to a one-line summary.
Napi::Value CheckModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsString() || !info[1].IsString())
    throw Napi::TypeError::New(env, "checkModel(modelDir: string, dtype: 'bf16' | 'fp16' | 'fp32')");
  auto* w = new CheckWorker(env, info[0].As<Napi::String>(), info[1].As<Napi::String>());
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// cudaAvailable(): { available, reason } (md::cuda_available): whether CUDA modules can run on a GPU here.
Napi::Value CudaAvailable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string why;
  const bool ok = md::cuda_available(&why);
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", Napi::Boolean::New(env, ok));
  o.Set("reason", Napi::String::New(env, why));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->engine_ctor = Napi::Persistent(EngineWrap::Define(env));
  env.SetInstanceData(data);
  exports.Set("create", Napi::Function::New<Create>(env, "create"));
  exports.Set("checkModel", Napi::Function::New<CheckModel>(env, "checkModel"));
  exports.Set("cudaAvailable", Napi::Function::New<CudaAvailable>(env, "cudaAvailable"));
  return exports;
}

}  // namespace

NODE_API_MODULE(magicdec_node, Init)
