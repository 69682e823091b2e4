// The host-memory Device (device.h): CPU modules, and CUDA modules built for the SIMT emulator (whose stream is
// this device's queue, md_abi.h md_emu_queue, so that the engine's stream capture runs under emulation too).
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "device.h"
#include "error.h"
#include "md_abi.h"

namespace md {

namespace {

/** One recorded piece of work: op(arg) at every replay, drop(arg) when the graph goes. */
struct HostOp {
  void (*op)(void*);
  void* arg;
  void (*drop)(void*);
};

/** A captured graph of the host device: its work in stream order. */
struct HostGraph {
  std::vector<HostOp> ops;
  ~HostGraph() {
    for (HostOp& o : ops) o.drop(o.arg);
  }
};

class HostDevice final : public Device {
 public:
  /** `queue`: the stream is an md_emu_queue (an emulated CUDA module's), and work can be captured. */
  HostDevice(std::string name, bool reads_host, bool queue) : name_(std::move(name)), reads_host_(reads_host), queued_(queue) {
    queue_.magic = MD_EMU_QUEUE_MAGIC;
    queue_.ctx = this;
    queue_.submit = [](void* ctx, void (*op)(void*), void* arg, void (*drop)(void*)) { static_cast<HostDevice*>(ctx)->submit(op, arg, drop); };
    queue_.capturing = [](void* ctx) { return static_cast<HostDevice*>(ctx)->capture_ ? 1 : 0; };
  }
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
  // A replay would read the host memory of its own time (or, on a GPU, fail): captured work takes no host data.
  void upload(void* dst, const void* src, size_t bytes) override {
    not_capturing("an upload");
    move(dst, src, bytes);
  }
  void download(void* dst, const void* src, size_t bytes) override {
    not_capturing("a download");
    move(dst, src, bytes);
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    run_or_record([=] { move(dst, src, bytes); });
  }
  void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width, size_t height) override {
    run_or_record([=] {
      for (size_t r = 0; r < height; ++r)
        move(static_cast<uint8_t*>(dst) + r * dst_pitch, static_cast<const uint8_t*>(src) + r * src_pitch, width);
    });
  }
  void fill(void* dst, int byte, size_t bytes) override {
    run_or_record([=] {
      if (bytes) std::memset(dst, byte, bytes);
    });
  }
  void* stream() override { return queued_ ? &queue_ : nullptr; }
  void synchronize() override { not_capturing("a synchronisation"); }
  void mark(int i) override {
    not_capturing("a timing mark");
    marks_[checked_mark(i)] = std::chrono::steady_clock::now();
  }
  double seconds(int from, int to) override {
    return std::chrono::duration<double>(marks_[checked_mark(to)] - marks_[checked_mark(from)]).count();
  }
  // CPU kernels run as they are called and ignore the stream: only the emulated device's queue captures.
  bool can_capture() const override { return queued_; }
  void begin_capture() override {
    if (!queued_) throw Error(name_ + ": internal: the CPU device captures no work");
    if (capture_) throw Error(name_ + ": internal: a capture began inside another");
    capture_ = std::make_unique<HostGraph>();
  }
  void* end_capture() override {
    if (!capture_) throw Error(name_ + ": internal: end_capture without begin_capture");
    return capture_.release();
  }
  void abort_capture() noexcept override { capture_.reset(); }
  void launch_graph(void* graph) override {
    not_capturing("a graph launch");
    for (HostOp& o : static_cast<HostGraph*>(graph)->ops) o.op(o.arg);
  }
  void release_graph(void* graph) noexcept override { delete static_cast<HostGraph*>(graph); }

 private:
  static void move(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memmove(dst, src, bytes);
  }
  void submit(void (*op)(void*), void* arg, void (*drop)(void*)) {
    if (capture_) {
      capture_->ops.push_back({op, arg, drop});
      return;
    }
    op(arg);
    drop(arg);
  }
  template <class F>
  void run_or_record(F f) {
    if (!capture_) return f();
    using Fn = std::function<void()>;
    submit([](void* a) { (*static_cast<Fn*>(a))(); }, new Fn(std::move(f)), [](void* a) { delete static_cast<Fn*>(a); });
  }
  void not_capturing(const char* what) const {
    if (capture_) throw Error(name_ + ": internal: " + what + " while the device captures work (captured work reads no host data and waits for nothing)");
  }
  void* get(size_t bytes, const std::string& what, bool zeroed) {
    const size_t n = bytes ? bytes : 1;
    void* p = zeroed ? std::calloc(n, 1) : std::malloc(n);
    if (!p) throw Error(name_ + ": cannot allocate " + std::to_string(bytes >> 20) + " MiB for " + what);
    return p;
  }

  std::string name_;
  bool reads_host_, queued_;
  md_emu_queue queue_{};
  std::unique_ptr<HostGraph> capture_;  // the graph being recorded
  std::chrono::steady_clock::time_point marks_[kMarks] = {};
};

}  // namespace

int Device::checked_mark(int i) const {
  if (i < 0 || i >= kMarks) throw Error(name() + ": internal: timing mark " + std::to_string(i) + " outside 0.." + std::to_string(kMarks - 1));
  return i;
}

std::unique_ptr<Device> make_cpu_device() { return std::make_unique<HostDevice>("cpu", true, false); }

std::unique_ptr<Device> make_emulated_device(const std::string& arch) {
  return std::make_unique<HostDevice>(arch + " under the SIMT emulator (host memory)", false, true);
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
