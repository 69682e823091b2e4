// The CUDA device layer alone (runtime/src/device_cuda.cpp), built with nvcc by test/runtime/cuda-device.test.ts:
// prints whether CUDA modules can run here and what opening a device for an sm_90 module gives.
#include <cstdio>
#include "device.h"
#include "error.h"
int main() {
  // Either "available 1 " or "available 0 <reason>"; then "device <name>" or "error <message>".
  std::string why;
  const bool ok = md::cuda_available(&why);
  std::printf("available %d %s\n", ok, why.c_str());
  try {
    auto d = md::make_cuda_device("sm_90", "m.so");
    std::printf("device %s\n", d->name().c_str());
  } catch (const md::Error& e) {
    std::printf("error %s\n", e.what());
  }
}
