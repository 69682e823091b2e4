// Fuzz target: a module's manifest.json, parsed and then checked against a fixed model config (the check a
// load makes once the manifest parses), so both readers of the manifest's text see the input.
#include "fuzz_target.h"
#include "model_config.h"
#include "module.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return md::fuzz::run_one(data, size, [](const std::string& text) {
    md::parse_manifest(text, "manifest.json");
    md::ModelConfig c;
    c.architecture = "llama";
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.num_layers = 1;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 16;
    c.vocab_size = 256;
    c.max_position_embeddings = 4096;
    md::check_manifest_model(text, "manifest.json", c, "config.json");
  });
}
