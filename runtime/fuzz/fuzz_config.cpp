// Fuzz target: a Hugging Face config.json through the runtime's model config reader.
#include "fuzz_target.h"
#include "model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return md::fuzz::run_one(data, size, [](const std::string& text) { md::parse_model_config(text, "config.json"); });
}
