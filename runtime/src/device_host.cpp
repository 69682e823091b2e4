// The host-memory Device (device.h): CPU modules, and CUDA modules built for the SIMT emulator.
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "device.h"
#include "error.h"

namespace md {

namespace {

class HostDevice final : public Device {
 public:
  HostDevice(std::string name, bool reads_host) : name_(std::move(name)), reads_host_(reads_host) {}
  std::string name() const override { return name_; }
  bool reads_host_memory() const override { return reads_host_; }
  void* alloc(size_t bytes, const std::string& what) override {
    void* p = get(bytes, what, false);
    // Poisoned like a GPU's uninitialised memory in the emulator (0xff bytes: NaN as float, -1 as int32),
    // so a buffer the engine forgets to fill shows.
    std::memset(p, 0xff, bytes);
    return p;
  }
  // calloc: large pools (the KV cache) get lazily-mapped zero pages instead of a memset.
  void* alloc_zeroed(size_t bytes, const std::string& what) override { return get(bytes, what, true); }
  void release(void* p) noexcept override { std::free(p); }
  void upload(void* dst, const void* src, size_t bytes) override { move(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { move(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { move(dst, src, bytes); }
  void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width, size_t height) override {
    for (size_t r = 0; r < height; ++r)
      move(static_cast<uint8_t*>(dst) + r * dst_pitch, static_cast<const uint8_t*>(src) + r * src_pitch, width);
  }
  void fill(void* dst, int byte, size_t bytes) override {
    if (bytes) std::memset(dst, byte, bytes);
  }
  void* stream() override { return nullptr; }
  void synchronize() override {}
  void mark(int i) override { marks_[checked_mark(i)] = std::chrono::steady_clock::now(); }
  double seconds(int from, int to) override {
    return std::chrono::duration<double>(marks_[checked_mark(to)] - marks_[checked_mark(from)]).count();
  }
  // Host work runs as it is queued: nothing to capture.
  bool can_capture() const override { return false; }
  void begin_capture() override { throw Error(name_ + ": internal: the host device captures no work"); }
  void* end_capture() override { throw Error(name_ + ": internal: the host device captures no work"); }
  void abort_capture() noexcept override {}
  void launch_graph(void*) override { throw Error(name_ + ": internal: the host device captures no work"); }
  void release_graph(void*) noexcept override {}

 private:
  static void move(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memmove(dst, src, bytes);
  }
  void* get(size_t bytes, const std::string& what, bool zeroed) {
    const size_t n = bytes ? bytes : 1;
    void* p = zeroed ? std::calloc(n, 1) : std::malloc(n);
    if (!p) throw Error(name_ + ": cannot allocate " + std::to_string(bytes >> 20) + " MiB for " + what);
    return p;
  }

  std::string name_;
  bool reads_host_;
  std::chrono::steady_clock::time_point marks_[kMarks] = {};
};

}  // namespace

int Device::checked_mark(int i) const {
  if (i < 0 || i >= kMarks) throw Error(name() + ": internal: timing mark " + std::to_string(i) + " outside 0.." + std::to_string(kMarks - 1));
  return i;
}

std::unique_ptr<Device> make_host_device(const std::string& name, bool reads_host_memory) {
  return std::make_unique<HostDevice>(name, reads_host_memory);
}

#ifndef MD_HAVE_CUDA
static const char kNoCuda[] =
    "this runtime was built without CUDA (configure it with -DMAGICDEC_CUDA=ON on a machine with the CUDA toolkit)";

std::unique_ptr<Device> make_cuda_device(const std::string& arch, const std::string& where) {
  throw Error(where + ": built for " + arch + ", but " + kNoCuda);
}

bool cuda_available(std::string* why) {
  if (why) *why = kNoCuda;
  return false;
}
#endif

}  // namespace md
