// A Llama-family model's shape, read from a Hugging Face config.json. Field names mirror dsl/models.ts
// (ModelConfig), which is what the module manifest carries, so the two can be compared field by field.
#pragma once
#include <string>

namespace md {

struct RopeScaling {
  std::string type;  // "" (none), "llama3" or "linear"
  double factor = 1;
  double low_freq_factor = 1;
  double high_freq_factor = 4;
  int original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // llama | mistral | qwen2
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int max_position_embeddings = 0;
  double rope_theta = 10000;
  RopeScaling rope_scaling;
  double rms_norm_eps = 1e-6;
  bool qkv_bias = false;  // Qwen2
  bool tie_word_embeddings = false;
  int sliding_window = 0;  // Mistral: q attends kv only when q - kv < sliding_window; 0 = no window
  int bos_token_id = -1;
  int eos_token_ids[4] = {-1, -1, -1, -1};  // up to 4 (Llama 3 lists several)
};

/** Parses config.json text; `where` (the file's path) prefixes every error. Throws md::Error. */
ModelConfig parse_model_config(const std::string& json_text, const std::string& where);

/** Reads and parses <dir>/config.json. */
ModelConfig load_model_config(const std::string& model_dir);

}  // namespace md
