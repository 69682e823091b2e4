// config.json -> ModelConfig by the rules of docs/MODEL-FILES.md, which codegen/model-config.ts follows
// too, check for check and in the same order (both run test/fixtures/config-cases.json).
#include "model_config.h"

#include <cstring>
#include <optional>

#include "error.h"
#include "json.h"
#include "md_limits.h"

namespace md {

namespace {

using json::Value;

int64_t int_limit(const std::string& field) {
  for (const auto& l : limits::kConfigInt)
    if (field == l.field) return l.max;
  throw Error("internal error: no limit for config field '" + field + "'");
}

/** A config object's fields; JSON null reads as absent. */
struct Fields {
  Value obj;

  std::optional<Value> find(const char* key) const {
    std::optional<Value> v = obj.get(key);
    if (!v || v->is_null()) return std::nullopt;
    return v;
  }
  bool has(const char* key) const { return find(key).has_value(); }

  /** Where a missing field would be, for its error. */
  [[noreturn]] void fail(const char* key, const std::string& what) const {
    throw Error(obj.file() + ": field '" + (obj.path().empty() ? std::string(key) : obj.path() + "." + key) + "' " + what);
  }

  /** An integer field in [1, its limit], written as an integer (128.0 is refused). */
  int positive_int(const Value& v) const {
    const int64_t max = int_limit(v.path());
    if (!v.is_integer()) v.fail("must be an integer, got " + v.dump());
    std::optional<int64_t> x = v.int64();
    if (!x || *x < 1 || *x > max) v.fail("must be an integer from 1 to " + std::to_string(max) + ", got " + v.dump());
    return int(*x);
  }
  int positive_int(const char* key) const {
    std::optional<Value> v = find(key);
    if (!v) fail(key, "is missing");
    return positive_int(*v);
  }
  int positive_int_or(const char* key, int fallback) const {
    std::optional<Value> v = find(key);
    return v ? positive_int(*v) : fallback;
  }

  double positive_number(const char* key) const {
    std::optional<Value> v = find(key);
    if (!v) fail(key, "is missing");
    return positive_number(*v);
  }
  double positive_number_or(const char* key, double fallback) const {
    std::optional<Value> v = find(key);
    return v ? positive_number(*v) : fallback;
  }
  static double positive_number(const Value& v) {
    if (!v.is_number()) v.fail("must be a number, got " + v.dump());
    const double x = *v.number();  // finite: the parser refuses numbers a double cannot hold
    if (!(x > 0)) v.fail("must be positive, got " + v.dump());
    return x;
  }

  bool boolean_or(const char* key, bool fallback) const {
    std::optional<Value> v = find(key);
    if (!v) return fallback;
    if (!v->is_bool()) v->fail("must be true or false, got " + v->dump());
    return *v->boolean();
  }
};

constexpr const char* kArchClasses[][2] = {
    {"LlamaForCausalLM", "llama"}, {"MistralForCausalLM", "mistral"}, {"Qwen2ForCausalLM", "qwen2"}};

std::string architecture_of(const Fields& f) {
  if (std::optional<Value> mt = f.find("model_type")) {
    if (!mt->is_string()) mt->fail("must be a string, got " + mt->dump());
    std::string t(*mt->string());
    if (t == "llama" || t == "mistral" || t == "qwen2") return t;
    mt->fail("is '" + t + "'; supported: llama, mistral, qwen2");
  }
  if (std::optional<Value> archs = f.find("architectures")) {
    if (!archs->is_array() || archs->size() == 0 || !archs->items()[0].is_string())
      archs->fail("must be a non-empty list of class names, got " + archs->dump());
    std::string a(*archs->items()[0].string());
    for (const auto& c : kArchClasses)
      if (a == c[0]) return c[1];
    archs->fail("names '" + a + "'; supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM");
  }
  f.fail("model_type", "is missing (and there is no 'architectures' list to infer it from)");
}

void read_rope_scaling(const Fields& f, ModelConfig& c) {
  std::optional<Value> rs = f.find("rope_scaling");
  if (!rs) return;
  if (!rs->is_object()) rs->fail("must be an object or null, got " + rs->dump());
  Fields s{*rs};
  std::optional<Value> kind = s.has("rope_type") ? s.find("rope_type") : s.find("type");
  if (!kind) s.fail("rope_type", "is missing");
  if (!kind->is_string()) kind->fail("must be a string, got " + kind->dump());
  std::string type(*kind->string());
  if (type == "default") return;
  if (type != "llama3" && type != "linear") kind->fail("is '" + type + "'; supported: llama3, linear, default");
  c.rope_scaling.type = type;
  c.rope_scaling.factor = s.positive_number("factor");
  if (type == "llama3") {
    c.rope_scaling.low_freq_factor = s.positive_number("low_freq_factor");
    c.rope_scaling.high_freq_factor = s.positive_number("high_freq_factor");
    c.rope_scaling.original_max_position_embeddings = s.positive_int("original_max_position_embeddings");
  }
}

/** A token id in [0, vocab_size). */
int token_id(const Value& v, int vocab_size) {
  std::optional<int64_t> x = v.int64();
  if (!x || *x < 0 || *x >= vocab_size)
    v.fail("must be a token id from 0 to " + std::to_string(vocab_size - 1) + " (vocab_size - 1), got " + v.dump());
  return int(*x);
}

void read_special_tokens(const Fields& f, ModelConfig& c) {
  if (std::optional<Value> b = f.find("bos_token_id")) c.bos_token_id = token_id(*b, c.vocab_size);
  std::optional<Value> e = f.find("eos_token_id");
  if (!e) return;
  if (!e->is_array()) {
    c.eos_token_ids[0] = token_id(*e, c.vocab_size);
    return;
  }
  if (e->size() < 1 || e->size() > size_t(limits::kMaxEosTokenIds))
    e->fail("must list 1 to " + std::to_string(limits::kMaxEosTokenIds) + " token ids, got " + std::to_string(e->size()));
  std::vector<Value> ids = e->items();
  for (size_t i = 0; i < ids.size(); ++i) c.eos_token_ids[i] = token_id(ids[i], c.vocab_size);
}

}  // namespace

ModelConfig parse_model_config(const std::string& text, const std::string& where) {
  json::Document doc = json::Document::parse(text, where);
  if (!doc.root().is_object()) throw Error(where + ": the top level must be a JSON object");
  Fields f{doc.root()};
  ModelConfig c;
  c.architecture = architecture_of(f);
  c.hidden_size = f.positive_int("hidden_size");
  c.intermediate_size = f.positive_int("intermediate_size");
  c.num_layers = f.positive_int("num_hidden_layers");
  c.num_heads = f.positive_int("num_attention_heads");
  c.num_kv_heads = f.positive_int_or("num_key_value_heads", c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0)
    f.fail("num_key_value_heads", "(" + std::to_string(c.num_kv_heads) + ") must divide num_attention_heads (" +
                                      std::to_string(c.num_heads) + ")");
  if (!f.has("head_dim") && c.hidden_size % c.num_heads != 0)
    f.fail("head_dim", "is missing and hidden_size (" + std::to_string(c.hidden_size) +
                           ") is not a multiple of num_attention_heads (" + std::to_string(c.num_heads) + ")");
  c.head_dim = f.positive_int_or("head_dim", c.hidden_size / c.num_heads);
  if (c.head_dim % 2 != 0) f.fail("head_dim", "must be even for rotary embeddings, got " + std::to_string(c.head_dim));
  c.vocab_size = f.positive_int("vocab_size");
  c.max_position_embeddings = f.positive_int("max_position_embeddings");
  c.rope_theta = f.positive_number_or("rope_theta", 10000);  // Hugging Face's default
  read_rope_scaling(f, c);
  c.rms_norm_eps = f.positive_number("rms_norm_eps");
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  if (std::optional<Value> act = f.find("hidden_act"); act && !(act->is_string() && *act->string() == "silu"))
    act->fail("is " + act->dump() + "; only silu is supported");
  if (f.boolean_or("mlp_bias", false)) f.fail("mlp_bias", "is true; MLP biases are not supported");
  c.qkv_bias = c.architecture == "qwen2";  // Qwen2 has q/k/v biases; no other attention bias is supported
  if (!c.qkv_bias && f.boolean_or("attention_bias", false))
    f.fail("attention_bias", "is true; only Qwen2 (q/k/v biases) is supported with attention biases");
  if (c.architecture == "mistral") {
    // Hugging Face's MistralConfig: an absent window is 4096, null is none (so null is not "absent" here).
    std::optional<Value> w = f.obj.get("sliding_window");
    c.sliding_window = !w ? 4096 : w->is_null() ? 0 : f.positive_int(*w);
  }
  if (c.architecture == "qwen2" && f.boolean_or("use_sliding_window", false))
    f.fail("use_sliding_window", "is true; Qwen2 sliding-window layers are not supported");
  read_special_tokens(f, c);
  return c;
}

ModelConfig load_model_config(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::string text;
  try {
    text = json::read_regular_file(path);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " (is '" + model_dir + "' a Hugging Face model directory?)");
  }
  return parse_model_config(text, path);
}

}  // namespace md
