// A Llama-family model's weights, checked against its config and held in the module's storage dtype:
// views into the memory-mapped safetensors when the dtypes agree (and the data is aligned), otherwise
// converted once at load into owned buffers; then, for a device that cannot read host memory, copied
// into device memory (place()).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "device.h"
#include "dtype.h"
#include "model_config.h"
#include "safetensors.h"

namespace md {

struct LayerWeights {
  const void* input_norm = nullptr;  // [hidden]
  const void* q = nullptr;           // [heads*head_dim, hidden]
  const void* k = nullptr;           // [kv_heads*head_dim, hidden]
  const void* v = nullptr;
  const void* q_bias = nullptr;  // [heads*head_dim] or null
  const void* k_bias = nullptr;
  const void* v_bias = nullptr;
  const void* o = nullptr;  // [hidden, heads*head_dim]
  const void* post_norm = nullptr;  // [hidden]
  const void* gate = nullptr;       // [intermediate, hidden]
  const void* up = nullptr;
  const void* down = nullptr;  // [hidden, intermediate]
};

class ModelWeights {
 public:
  /** Loads <dir>/config.json and the safetensors, validating every tensor; throws md::Error. */
  static std::unique_ptr<ModelWeights> load(const std::string& dir, DType storage);

  const ModelConfig& config() const { return config_; }
  DType storage() const { return storage_; }
  const void* embed() const { return embed_; }
  const void* final_norm() const { return final_norm_; }
  const void* lm_head() const { return lm_head_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  /**
   * Makes every tensor pointer one `device`'s kernels can read: unchanged where the device reads host memory,
   * otherwise each tensor is copied into device memory (and the host copies converted at load are freed).
   */
  void place(Device& device);
  /** Bytes converted into owned buffers at load (0 when the files already hold the storage dtype). */
  size_t converted_bytes() const { return converted_bytes_; }

 private:
  const void* take(const std::string& name, std::vector<int64_t> shape, bool required = true);

  std::string dir_;
  ModelConfig config_;
  DType storage_ = DType::F32;
  SafetensorsSet files_;
  std::vector<std::unique_ptr<uint8_t[]>> owned_;
  std::vector<std::pair<const void*, size_t>> tensors_;  // every tensor taken: its data and bytes
  std::vector<DeviceBuffer<uint8_t>> on_device_;
  size_t converted_bytes_ = 0;
  const void* embed_ = nullptr;
  const void* final_norm_ = nullptr;
  const void* lm_head_ = nullptr;
  std::vector<LayerWeights> layers_;
};

}  // namespace md
