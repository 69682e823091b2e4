#include "module.h"

#include <dlfcn.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <optional>

#include "device.h"
#include "error.h"
#include "json.h"

namespace md {

namespace {

using json::Value;

Value field(const Value& j, const char* key, const std::string& where) {
  std::optional<Value> v = j.get(key);
  if (!v) throw Error(where + ": field '" + key + "' is missing");
  return *v;
}

// A JSON integer as an int, refusing what a cast would silently truncate.
bool as_int(const Value& v, int* out) {
  std::optional<int64_t> x = v.int64();
  if (!x || *x < INT_MIN || *x > INT_MAX) return false;
  *out = int(*x);
  return true;
}

int int_field(const Value& j, const char* key, const std::string& where) {
  Value v = field(j, key, where);
  int out;
  if (!as_int(v, &out)) throw Error(where + ": field '" + key + "' must be an integer in the int32 range, got " + v.dump());
  return out;
}

std::string str_field(const Value& j, const char* key, const std::string& where) {
  Value v = field(j, key, where);
  if (!v.is_string()) throw Error(where + ": field '" + key + "' must be a string, got " + v.dump());
  return std::string(*v.string());
}

std::vector<PassParam> read_params(const Value& pass, const std::string& where) {
  Value ps = field(pass, "params", where);
  if (!ps.is_array()) throw Error(where + ": field 'params' must be a list");
  std::vector<std::pair<int, PassParam>> indexed;
  for (const Value& p : ps.items()) {
    PassParam pp;
    pp.key = str_field(p, "key", where + ".params");
    pp.name = str_field(p, "name", where + ".params");
    Value v = field(p, "value", where + ".params." + pp.key);
    if (!v.is_number()) throw Error(where + ".params." + pp.key + ": field 'value' must be a number");
    pp.value = float(*v.number());
    std::string ty = str_field(p, "ty", where + ".params." + pp.key);
    if (ty != "i32" && ty != "f32") throw Error(where + ".params." + pp.key + ": field 'ty' is '" + ty + "'; expected i32 or f32");
    pp.i32 = ty == "i32";
    indexed.emplace_back(int_field(p, "index", where + ".params." + pp.key), pp);
  }
  std::sort(indexed.begin(), indexed.end(), [](auto& a, auto& b) { return a.first < b.first; });
  std::vector<PassParam> out;
  for (size_t i = 0; i < indexed.size(); ++i) {
    if (indexed[i].first != int(i)) throw Error(where + ": param indices must be 0.." + std::to_string(indexed.size() - 1));
    out.push_back(indexed[i].second);
  }
  return out;
}

bool same_number(double a, double b) { return a == b || std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b)); }

std::string number_text(double v) { return json::Writer().value(v).str(); }

}  // namespace

ModuleManifest parse_manifest(const std::string& text, const std::string& where) {
  json::Document doc = json::Document::parse(text, where);
  const Value j = doc.root();
  if (!j.is_object()) throw Error(where + ": manifest must be a JSON object");
  ModuleManifest m;
  m.json = text;
  int format = int_field(j, "format", where);
  if (format != MD_MANIFEST_FORMAT)
    throw Error(where + ": manifest format " + std::to_string(format) + ", this runtime reads format " +
                std::to_string(MD_MANIFEST_FORMAT) + " (rebuild the module with this version of magicdec)");
  m.name = str_field(j, "name", where);
  m.hash = str_field(j, "hash", where);
  m.arch = str_field(j, "arch", where);
  std::string dtype = str_field(j, "dtype", where);
  if (!parse_storage_dtype(dtype, &m.dtype)) throw Error(where + ": field 'dtype' is '" + dtype + "'; expected bf16, fp16 or fp32");
  m.gamma = int_field(j, "gamma", where);
  if (m.gamma < 1) throw Error(where + ": field 'gamma' must be at least 1");
  if (std::optional<Value> a = j.get("adaptiveGamma")) {  // absent: a fixed gamma
    std::optional<bool> on = a->boolean();
    if (!on) throw Error(where + ": field 'adaptiveGamma' must be true or false, got " + a->dump());
    m.adaptive_gamma = *on;
  }
  Value b = field(j, "buckets", where);
  if (!b.is_array() || b.size() == 0) throw Error(where + ": field 'buckets' must be a non-empty list");
  for (const Value& x : b.items()) {
    int bucket;
    if (!as_int(x, &bucket) || bucket < 1) throw Error(where + ": field 'buckets' must hold positive int32 integers, got " + b.dump());
    // Row counts (bucket * (gamma + 1)) are ints in the ABI.
    if (int64_t(bucket) * (int64_t(m.gamma) + 1) > INT_MAX)
      throw Error(where + ": bucket " + std::to_string(bucket) + " * (gamma + 1) rows exceeds the int32 range");
    m.buckets.push_back(bucket);
  }
  std::sort(m.buckets.begin(), m.buckets.end());
  m.max_seq = int_field(j, "maxSeq", where);
  m.page_size = int_field(j, "pageSize", where);
  m.pages_per_seq = int_field(j, "pagesPerSeq", where);
  if (m.page_size < 1 || m.max_seq < 1 || m.pages_per_seq < 1)
    throw Error(where + ": fields 'maxSeq', 'pageSize', 'pagesPerSeq' must be positive");
  // The cache addresses positions of a sequence (pages_per_seq * page_size of them) with int32.
  const int64_t capacity = int64_t(m.pages_per_seq) * m.page_size;
  if (capacity > INT_MAX)
    throw Error(where + ": pagesPerSeq * pageSize = " + std::to_string(capacity) + " positions exceeds the int32 range");
  if (capacity < m.max_seq)
    throw Error(where + ": pagesPerSeq * pageSize = " + std::to_string(capacity) + " positions is less than maxSeq " +
                std::to_string(m.max_seq));
  Value passes = field(j, "passes", where);
  m.target_params = read_params(field(passes, "target", where + ".passes"), where + ".passes.target");
  m.draft_params = read_params(field(passes, "draft", where + ".passes"), where + ".passes.draft");
  m.verify_mode = str_field(field(j, "verify", where), "mode", where + ".verify");
  m.verify_name = str_field(field(j, "verify", where), "name", where + ".verify");
  return m;
}

void check_manifest_model(const std::string& text, const std::string& where, const ModelConfig& c,
                          const std::string& config_where) {
  json::Document doc = json::Document::parse(text, where);
  const Value m = field(doc.root(), "model", where);
  auto differ = [&](const std::string& field_name, const std::string& module_value, const std::string& model_value) {
    throw Error(where + ": model." + field_name + " is " + module_value + " but " + config_where + " gives " +
                model_value + " (the module was built for a different model)");
  };
  auto check_int = [&](const char* f, int v) {
    int mv = int_field(m, f, where + ".model");
    if (mv != v) differ(f, std::to_string(mv), std::to_string(v));
  };
  auto check_num = [&](const Value& obj, const std::string& obj_where, const std::string& name, const char* f, double v) {
    Value x = field(obj, f, obj_where);
    if (!x.is_number() || !same_number(*x.number(), v)) differ(name, x.is_number() ? number_text(*x.number()) : x.dump(), number_text(v));
  };
  auto check_bool = [&](const char* f, bool v) {
    Value x = field(m, f, where + ".model");
    if (!x.is_bool() || *x.boolean() != v) differ(f, x.dump(), v ? "true" : "false");
  };
  std::string arch = str_field(m, "architecture", where + ".model");
  if (arch != c.architecture) differ("architecture", arch, c.architecture);
  check_int("hiddenSize", c.hidden_size);
  check_int("intermediateSize", c.intermediate_size);
  check_int("numLayers", c.num_layers);
  check_int("numHeads", c.num_heads);
  check_int("numKvHeads", c.num_kv_heads);
  check_int("headDim", c.head_dim);
  check_int("vocabSize", c.vocab_size);
  check_num(m, where + ".model", "ropeTheta", "ropeTheta", c.rope_theta);
  check_num(m, where + ".model", "rmsNormEps", "rmsNormEps", c.rms_norm_eps);
  check_bool("qkvBias", c.qkv_bias);
  check_bool("tieWordEmbeddings", c.tie_word_embeddings);
  Value sw = field(m, "slidingWindow", where + ".model");
  int module_window = -1;
  if (sw.is_null()) module_window = 0;
  else if (!as_int(sw, &module_window)) module_window = -1;
  if (module_window != c.sliding_window)
    differ("slidingWindow", sw.dump(), c.sliding_window ? std::to_string(c.sliding_window) : "none");
  Value rs = field(m, "ropeScaling", where + ".model");
  const RopeScaling& r = c.rope_scaling;
  if (rs.is_null() != r.type.empty())
    differ("ropeScaling", rs.dump(), r.type.empty() ? "null" : "rope_type " + r.type);
  if (!rs.is_null()) {
    std::string t = str_field(rs, "type", where + ".model.ropeScaling");
    if (t != r.type) differ("ropeScaling.type", t, r.type);
    auto num = [&](const char* f, double v) { check_num(rs, where + ".model.ropeScaling", std::string("ropeScaling.") + f, f, v); };
    num("factor", r.factor);
    if (r.type == "llama3") {
      num("lowFreqFactor", r.low_freq_factor);
      num("highFreqFactor", r.high_freq_factor);
      num("originalMaxPositionEmbeddings", r.original_max_position_embeddings);
    }
  }
}

Module::Module(const std::string& path) : path_(path) {
  // RTLD_NODELETE: a CPU module runs OpenMP, whose idle pool threads outlive our calls; unmapping the
  // library under them on dlclose crashes the process at exit. The mapping stays for the process' life.
  handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!handle_) {
    const char* e = ::dlerror();
    throw Error(path + ": cannot load module: " + (e ? e : "unknown dlopen error"));
  }
  try {
    // The manifest first: it says whether the rest is worth resolving, and which buckets there are.
    extras_.module_manifest = reinterpret_cast<md_module_manifest_fn>(symbol("md_module_manifest"));
    const char* text = extras_.module_manifest();
    if (!text) throw Error(path + ": md_module_manifest() returned NULL");
    manifest_ = parse_manifest(text, path + " (manifest)");
    if (manifest_.arch != "cpu" && manifest_.arch != "sm_80" && manifest_.arch != "sm_90")
      throw Error(path + ": built for '" + manifest_.arch + "'; this runtime runs cpu, sm_80 and sm_90 modules");
    // Optional: only a CUDA module built for the SIMT emulator exports it (codegen/abi.ts EMULATED_SYMBOL).
    ::dlerror();
    auto emulated = reinterpret_cast<int (*)(void)>(::dlsym(handle_, MD_EMULATED_SYMBOL));
    emulated_ = emulated && emulated() == 1;
    // A GPU module needs a GPU: say so before resolving kernels a missing one could never run.
    std::string why;
    if (manifest_.arch != "cpu" && !emulated_ && !cuda_available(&why))
      throw Error(path + ": built for " + manifest_.arch + ", but " + why);
#define MD_RESOLVE_EXTRA(name) extras_.name = reinterpret_cast<md_##name##_fn>(symbol("md_" #name));
#define MD_RESOLVE_SHARED(name, kind) name = reinterpret_cast<md_##kind##_fn>(symbol("md_" #name));
    MD_MODULE_EXTRAS(MD_RESOLVE_EXTRA)
    MD_SHARED_KERNELS(MD_RESOLVE_SHARED)
    for (int b : manifest_.buckets) {
      const std::string suffix = "_b" + std::to_string(b);
      BucketKernels k;
      k.bucket = b;
      k.max_rows = b * (manifest_.gamma + 1);
#define MD_RESOLVE_BUCKET(name, kind) k.name = reinterpret_cast<md_##kind##_fn>(symbol("md_" #name + suffix));
      MD_BUCKET_KERNELS(MD_RESOLVE_BUCKET)
      buckets_.push_back(k);
    }
#undef MD_RESOLVE_EXTRA
#undef MD_RESOLVE_SHARED
#undef MD_RESOLVE_BUCKET
  } catch (...) {
    ::dlclose(handle_);
    handle_ = nullptr;
    throw;
  }
}

Module::~Module() {
  if (handle_) ::dlclose(handle_);
}

void* Module::symbol(const std::string& name) {
  ::dlerror();
  void* p = ::dlsym(handle_, name.c_str());
  if (!p) throw Error(path_ + ": module does not export '" + name + "' (not a magicdec module, or built for another ABI)");
  return p;
}

const BucketKernels* Module::bucket_for(int seqs, int rows) const {
  for (const BucketKernels& k : buckets_)
    if (k.bucket >= seqs && k.max_rows >= rows) return &k;
  return nullptr;
}

std::string Module::status_string(int status) const {
  const char* s = extras_.status_string ? extras_.status_string(status) : nullptr;
  return s ? s : "status " + std::to_string(status);
}

}  // namespace md
