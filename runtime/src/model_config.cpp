#include "model_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "error.h"

namespace md {

using nlohmann::json;

namespace {

struct Reader {
  const json& j;
  const std::string& where;

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw Error(where + ": field '" + field + "' " + what);
  }

  const json* find(const char* key) const {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    return &*it;
  }

  int positive_int(const char* key, const json* v) const {
    if (!v) fail(key, "is missing");
    if (!v->is_number_integer()) fail(key, "must be an integer, got " + v->dump());
    long long x = v->get<long long>();
    if (x <= 0 || x > (1ll << 30)) fail(key, "must be a positive integer, got " + v->dump());
    return int(x);
  }
  int positive_int(const char* key) const { return positive_int(key, find(key)); }
  int positive_int_or(const char* key, int dflt) const {
    const json* v = find(key);
    return v ? positive_int(key, v) : dflt;
  }

  double positive_number(const char* key, const json* v) const {
    if (!v) fail(key, "is missing");
    if (!v->is_number()) fail(key, "must be a number, got " + v->dump());
    double x = v->get<double>();
    if (!(x > 0)) fail(key, "must be positive, got " + v->dump());
    return x;
  }
  double positive_number_or(const char* key, double dflt) const {
    const json* v = find(key);
    return v ? positive_number(key, v) : dflt;
  }

  bool boolean_or(const char* key, bool dflt) const {
    const json* v = find(key);
    if (!v) return dflt;
    if (!v->is_boolean()) fail(key, "must be true or false, got " + v->dump());
    return v->get<bool>();
  }
};

std::string detect_architecture(const Reader& r) {
  std::string model_type;
  if (const json* mt = r.find("model_type")) {
    if (!mt->is_string()) r.fail("model_type", "must be a string");
    model_type = mt->get<std::string>();
  }
  if (model_type.empty()) {
    if (const json* archs = r.find("architectures"); archs && archs->is_array() && !archs->empty() && (*archs)[0].is_string()) {
      std::string a = (*archs)[0].get<std::string>();
      if (a.rfind("Llama", 0) == 0) model_type = "llama";
      else if (a.rfind("Mistral", 0) == 0) model_type = "mistral";
      else if (a.rfind("Qwen2", 0) == 0) model_type = "qwen2";
      else r.fail("architectures", "names unsupported architecture '" + a + "' (supported: Llama, Mistral, Qwen2)");
    } else {
      r.fail("model_type", "is missing (and no 'architectures' list to infer it from)");
    }
  }
  if (model_type != "llama" && model_type != "mistral" && model_type != "qwen2")
    r.fail("model_type", "is '" + model_type + "'; supported: llama, mistral, qwen2");
  return model_type;
}

void read_rope_scaling(const Reader& r, ModelConfig& c) {
  const json* rs = r.find("rope_scaling");
  if (!rs) return;
  if (!rs->is_object()) r.fail("rope_scaling", "must be an object or null");
  Reader s{*rs, r.where};
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    if (const json* t = s.find(key)) {
      if (!t->is_string()) r.fail(std::string("rope_scaling.") + key, "must be a string");
      type = t->get<std::string>();
      break;
    }
  }
  if (type == "default") return;
  if (type != "llama3" && type != "linear")
    r.fail("rope_scaling.rope_type", "is '" + type + "'; supported: llama3, linear (or null)");
  c.rope_scaling.type = type;
  try {
    c.rope_scaling.factor = s.positive_number("factor", s.find("factor"));
    if (type == "llama3") {
      c.rope_scaling.low_freq_factor = s.positive_number("low_freq_factor", s.find("low_freq_factor"));
      c.rope_scaling.high_freq_factor = s.positive_number("high_freq_factor", s.find("high_freq_factor"));
      c.rope_scaling.original_max_position_embeddings =
          s.positive_int("original_max_position_embeddings", s.find("original_max_position_embeddings"));
    }
  } catch (const Error& e) {
    // Re-prefix the field with its parent so the message reads rope_scaling.factor.
    std::string m = e.what();
    auto at = m.find("field '");
    throw Error(at == std::string::npos ? m : m.insert(at + 7, "rope_scaling."));
  }
}

void read_eos(const Reader& r, ModelConfig& c) {
  const json* e = r.find("eos_token_id");
  if (!e) return;
  if (e->is_number_integer()) {
    c.eos_token_ids[0] = e->get<int>();
  } else if (e->is_array()) {
    if (e->size() > 4) r.fail("eos_token_id", "lists more than 4 tokens");
    for (size_t i = 0; i < e->size(); ++i) {
      if (!(*e)[i].is_number_integer()) r.fail("eos_token_id", "must hold integers");
      c.eos_token_ids[i] = (*e)[i].get<int>();
    }
  } else {
    r.fail("eos_token_id", "must be an integer or a list of integers");
  }
}

}  // namespace

ModelConfig parse_model_config(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(where + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error(where + ": must hold a JSON object");
  Reader r{j, where};
  ModelConfig c;
  c.architecture = detect_architecture(r);
  c.hidden_size = r.positive_int("hidden_size");
  c.intermediate_size = r.positive_int("intermediate_size");
  c.num_layers = r.positive_int("num_hidden_layers");
  c.num_heads = r.positive_int("num_attention_heads");
  c.num_kv_heads = r.positive_int_or("num_key_value_heads", c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0)
    r.fail("num_key_value_heads", "(" + std::to_string(c.num_kv_heads) + ") must divide num_attention_heads (" +
                                      std::to_string(c.num_heads) + ")");
  if (c.hidden_size % c.num_heads != 0 && !r.find("head_dim"))
    r.fail("head_dim", "is missing and hidden_size is not a multiple of num_attention_heads");
  c.head_dim = r.positive_int_or("head_dim", c.hidden_size / c.num_heads);
  if (c.head_dim % 2 != 0) r.fail("head_dim", "must be even for rotary embeddings");
  c.vocab_size = r.positive_int("vocab_size");
  c.max_position_embeddings = r.positive_int("max_position_embeddings");
  c.rope_theta = r.positive_number_or("rope_theta", 10000);
  read_rope_scaling(r, c);
  c.rms_norm_eps = r.positive_number("rms_norm_eps", r.find("rms_norm_eps"));
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", false);
  if (const json* act = r.find("hidden_act"); act && !(act->is_string() && act->get<std::string>() == "silu"))
    r.fail("hidden_act", "is " + act->dump() + "; only silu (SwiGLU) is supported");
  if (r.boolean_or("mlp_bias", false)) r.fail("mlp_bias", "is true; MLP biases are not supported");
  // Matches codegen/model-config.ts: Qwen2 has q/k/v biases; other attention biases are not supported.
  c.qkv_bias = c.architecture == "qwen2";
  if (!c.qkv_bias && r.boolean_or("attention_bias", false))
    r.fail("attention_bias", "is true; only Qwen2 (q/k/v biases) is supported with attention biases");
  // Matches codegen/model-config.ts: Mistral's window defaults to 4096 (Hugging Face) and null means none.
  if (c.architecture == "mistral") {
    // find() folds null into "missing"; here the two differ, so look at the raw field.
    const auto w = j.find("sliding_window");
    c.sliding_window = w == j.end() ? 4096 : w->is_null() ? 0 : r.positive_int("sliding_window");
  }
  if (c.architecture == "qwen2" && r.boolean_or("use_sliding_window", false))
    r.fail("use_sliding_window", "is true; Qwen2 sliding-window layers are not supported");
  if (const json* b = r.find("bos_token_id"); b && b->is_number_integer()) c.bos_token_id = b->get<int>();
  read_eos(r, c);
  return c;
}

ModelConfig load_model_config(const std::string& model_dir) {
  std::string path = model_dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open (is '" + model_dir + "' a Hugging Face model directory?)");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_model_config(ss.str(), path);
}

}  // namespace md
