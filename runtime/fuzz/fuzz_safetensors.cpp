// Fuzz target: a whole safetensors file image (8-byte header length, JSON header, data section) through the
// validation every mapped weight file gets; on success every tensor view must lie inside the input.
#include "fuzz_target.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return md::fuzz::run_one(data, size, [data, size](const std::string&) {
    md::SafetensorsSet set;
    set.add_bytes(data, size, "model.safetensors");
    for (const auto& [name, t] : set.tensors())
      if (t.data < data || t.data + t.nbytes > data + size) __builtin_trap();
  });
}
