// Where a module's kernels read and write: the engine keeps weights, the KV cache and activations in a
// Device's memory and moves only what it must between host and device, in order on the device's one stream.
// Two implementations (docs/ARCHITECTURE.md, "The device layer"):
// - host memory (device_host.cpp): CPU modules, and CUDA modules built for the SIMT emulator (their device
//   memory is host memory and their stream is ignored). Allocations are separate host buffers and copies
//   are real copies, so the engine's transfers are the same ones, in the same places, as on a GPU.
// - CUDA (device_cuda.cpp, built with MAGICDEC_CUDA=ON): cudaMalloc'd memory, one stream, async copies.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace md {

class Device {
 public:
  virtual ~Device() = default;
  /** Readable name, e.g. "cpu", "cuda:0 (NVIDIA H200, sm_90)". */
  virtual std::string name() const = 0;
  /**
   * Kernels can read host memory in place (the CPU): weights memory-mapped from safetensors are used as
   * they are instead of copied.
   */
  virtual bool reads_host_memory() const = 0;
  /** `bytes` of device memory (uninitialised; poisoned where the implementation can); `what` names it in errors. */
  virtual void* alloc(size_t bytes, const std::string& what) = 0;
  /** As alloc, zero-filled. */
  virtual void* alloc_zeroed(size_t bytes, const std::string& what) = 0;
  virtual void release(void* p) noexcept = 0;
  // Copies and fills, in stream order. A host source may be reused once the call returns; a host
  // destination holds the data after synchronize().
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  virtual void download(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  /** `height` rows of `width` bytes, device to device, with row pitches in bytes. */
  virtual void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width, size_t height) = 0;
  virtual void fill(void* dst, int byte, size_t bytes) = 0;
  /** What kernels take as `stream` (cudaStream_t on CUDA; null on the host). */
  virtual void* stream() = 0;
  /** Waits for everything queued; throws md::Error for a failure the device reports only now. */
  virtual void synchronize() = 0;
  /**
   * Timing marks in stream order: mark(i) notes when the stream reaches this point (a CUDA event; on the
   * host, where work is done when queued, the clock), and after a synchronize() that follows both,
   * seconds(i, j) is the device time from mark i to mark j. The engine times a round's phases with them:
   * on a GPU the host's clock between two launches measures only the queueing.
   */
  static constexpr int kMarks = 4;
  virtual void mark(int i) = 0;
  virtual double seconds(int from, int to) = 0;
  /**
   * Stream capture, where the device has it (CUDA graphs, and their twin on the emulated device; the CPU
   * device has none: can_capture() is false and the rest is never called). Between begin_capture() and
   * end_capture() the stream's work is recorded instead of run, and end_capture() returns it as an
   * executable graph that launch_graph() queues, as often as wanted, and release_graph() frees. Kernel
   * arguments are taken as they are when recorded. Recorded work must not upload or download host data
   * (a replay would copy the host memory of the time it replays, or fail), synchronise or mark time; the
   * emulated device throws for those. abort_capture() ends a capture that failed half-way, leaving the
   * stream usable.
   */
  virtual bool can_capture() const = 0;
  virtual void begin_capture() = 0;
  virtual void* end_capture() = 0;
  virtual void abort_capture() noexcept = 0;
  virtual void launch_graph(void* graph) = 0;
  virtual void release_graph(void* graph) noexcept = 0;

 protected:
  /** i, once checked to name a timing mark (an internal error otherwise). */
  int checked_mark(int i) const;
};

/** A captured graph, released with its Device. */
class DeviceGraph {
 public:
  DeviceGraph(Device& d, void* graph) : dev_(&d), graph_(graph) {}
  DeviceGraph(DeviceGraph&& o) noexcept : dev_(o.dev_), graph_(o.graph_) { o.graph_ = nullptr; }
  DeviceGraph& operator=(DeviceGraph&&) = delete;
  ~DeviceGraph() {
    if (graph_) dev_->release_graph(graph_);
  }
  void* get() const { return graph_; }

 private:
  Device* dev_;
  void* graph_;
};

/** Host memory for CPU modules: kernels read host memory in place and run as they are called. */
std::unique_ptr<Device> make_cpu_device();

/**
 * Host memory for a CUDA module built for the SIMT emulator (`arch` names the target it stands in for),
 * kept apart like a GPU's. Its stream is a queue (md_abi.h md_emu_queue) through which the module submits
 * its work, so that it captures like a CUDA stream: recorded kernels, copies and fills, replayed as a graph.
 */
std::unique_ptr<Device> make_emulated_device(const std::string& arch);

/**
 * The CUDA device for a module built for `arch` (sm_80, sm_90): throws md::Error when this runtime was
 * built without CUDA, there is no GPU or the driver is too old, or the GPU cannot run `arch` code.
 * `where` (the module's path) starts the messages.
 */
std::unique_ptr<Device> make_cuda_device(const std::string& arch, const std::string& where);

/** Whether this runtime can run CUDA modules here; if not, *why says what is missing. */
bool cuda_available(std::string* why);

/** A typed device allocation, freed with its Device. */
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Device& d, size_t count, const std::string& what, bool zeroed = false)
      : dev_(&d), count_(count),
        p_(static_cast<T*>(zeroed ? d.alloc_zeroed(bytes_of(count), what) : d.alloc(bytes_of(count), what))) {}
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      dev_ = o.dev_, count_ = o.count_, p_ = o.p_;
      o.p_ = nullptr, o.count_ = 0;
    }
    return *this;
  }
  ~DeviceBuffer() { reset(); }
  T* get() const { return p_; }
  size_t size() const { return count_; }
  bool empty() const { return p_ == nullptr; }

 private:
  static size_t bytes_of(size_t count) { return (count ? count : 1) * sizeof(T); }
  void reset() {
    if (p_) dev_->release(p_);
    p_ = nullptr, count_ = 0;
  }
  Device* dev_ = nullptr;
  size_t count_ = 0;
  T* p_ = nullptr;
};

}  // namespace md
