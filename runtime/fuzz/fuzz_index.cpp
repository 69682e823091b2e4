// Fuzz target: a model.safetensors.index.json through the shard index reader.
#include "fuzz_target.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return md::fuzz::run_one(data, size, [](const std::string& text) {
    for (const auto& [name, file] : md::parse_safetensors_index(text, "model.safetensors.index.json", "model"))
      if (file.compare(0, 6, "model/") != 0 || file.find('/', 6) != std::string::npos) __builtin_trap();
  });
}
