#include "weights.h"

#include <cstdint>
#include <map>

#include "error.h"

namespace md {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

const void* ModelWeights::take(const std::string& name, std::vector<int64_t> shape, bool required) {
  const TensorView* t = files_.find(name);
  if (!t) {
    if (!required) return nullptr;
    throw Error(dir_ + ": tensor '" + name + "' is missing (expected shape " + shape_str(shape) + ")");
  }
  DType from;
  if (!parse_safetensors_dtype(t->dtype, &from))
    throw Error(t->file + ": tensor '" + name + "' has dtype " + t->dtype + "; supported: F32, BF16, F16");
  if (t->shape != shape)
    throw Error(t->file + ": tensor '" + name + "' has shape " + shape_str(t->shape) + ", config.json implies " +
                shape_str(shape));
  size_t n = t->nbytes / dtype_size(from);
  bool aligned = reinterpret_cast<uintptr_t>(t->data) % dtype_size(storage_) == 0;
  if (from == storage_ && aligned) {
    tensors_.emplace_back(t->data, t->nbytes);
    return t->data;
  }
  auto buf = std::make_unique<uint8_t[]>(n * dtype_size(storage_));
  convert_elements(t->data, from, buf.get(), storage_, n);
  converted_bytes_ += n * dtype_size(storage_);
  owned_.push_back(std::move(buf));
  tensors_.emplace_back(owned_.back().get(), n * dtype_size(storage_));
  return owned_.back().get();
}

void ModelWeights::place(Device& device) {
  if (device.reads_host_memory() || !on_device_.empty()) return;
  std::map<const void*, const void*> moved;  // host data -> its device copy (a tied LM head is the embedding)
  for (const auto& [host, bytes] : tensors_) {
    if (moved.count(host)) continue;
    on_device_.emplace_back(device, bytes, "the model's weights (" + std::to_string(bytes >> 20) + " MiB tensor)");
    device.upload(on_device_.back().get(), host, bytes);
    moved[host] = on_device_.back().get();
  }
  device.synchronize();
  auto to = [&](const void*& p) {
    if (p) p = moved.at(p);
  };
  to(embed_), to(final_norm_), to(lm_head_);
  for (LayerWeights& L : layers_)
    for (const void** p : {&L.input_norm, &L.q, &L.k, &L.v, &L.q_bias, &L.k_bias, &L.v_bias, &L.o, &L.post_norm, &L.gate, &L.up, &L.down})
      to(*p);
  owned_.clear();
}

std::unique_ptr<ModelWeights> ModelWeights::load(const std::string& dir, DType storage) {
  auto w = std::unique_ptr<ModelWeights>(new ModelWeights());
  w->dir_ = dir;
  w->storage_ = storage;
  w->config_ = load_model_config(dir);
  w->files_ = SafetensorsSet::open_dir(dir);
  const ModelConfig& c = w->config_;
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t QD = int64_t(c.num_heads) * c.head_dim, KD = int64_t(c.num_kv_heads) * c.head_dim;

  w->embed_ = w->take("model.embed_tokens.weight", {V, H});
  w->final_norm_ = w->take("model.norm.weight", {H});
  // Tied models may still carry an lm_head copy; Hugging Face ignores it and so do we.
  w->lm_head_ = c.tie_word_embeddings ? w->embed_ : w->take("lm_head.weight", {V, H});
  for (int l = 0; l < c.num_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights L;
    L.input_norm = w->take(p + "input_layernorm.weight", {H});
    L.q = w->take(p + "self_attn.q_proj.weight", {QD, H});
    L.k = w->take(p + "self_attn.k_proj.weight", {KD, H});
    L.v = w->take(p + "self_attn.v_proj.weight", {KD, H});
    if (c.qkv_bias) {
      L.q_bias = w->take(p + "self_attn.q_proj.bias", {QD});
      L.k_bias = w->take(p + "self_attn.k_proj.bias", {KD});
      L.v_bias = w->take(p + "self_attn.v_proj.bias", {KD});
    }
    L.o = w->take(p + "self_attn.o_proj.weight", {H, QD});
    L.post_norm = w->take(p + "post_attention_layernorm.weight", {H});
    L.gate = w->take(p + "mlp.gate_proj.weight", {I, H});
    L.up = w->take(p + "mlp.up_proj.weight", {I, H});
    L.down = w->take(p + "mlp.down_proj.weight", {H, I});
    w->layers_.push_back(L);
  }
  return w;
}

}  // namespace md
