// The CUDA Device (device.h), built only with MAGICDEC_CUDA=ON: plain cudaMalloc (never managed memory),
// one non-blocking stream per engine, every copy and fill cudaMemcpyAsync / cudaMemsetAsync on it.
#include <cuda_runtime_api.h>

#include "device.h"
#include "error.h"

namespace md {

namespace {

std::string cuda_text(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

/** Device 0 (the first of CUDA_VISIBLE_DEVICES), or an explanation of why there is none. */
bool find_gpu(int* device, cudaDeviceProp* prop, std::string* why) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaErrorInsufficientDriver) {
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    *why = driver ? "the NVIDIA driver supports CUDA " + version_text(driver) + ", older than this runtime's CUDA " +
                        version_text(runtime) + " (update the driver)"
                  : "no NVIDIA driver is loaded (libcuda.so not found): no GPU to run on";
    return false;
  }
  if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0)) {
    *why = "no CUDA GPU found (check CUDA_VISIBLE_DEVICES and the driver)";
    return false;
  }
  if (e != cudaSuccess) {
    *why = "CUDA cannot list GPUs (" + cuda_text(e) + ")";
    return false;
  }
  cudaError_t p = cudaGetDevice(device);
  if (p == cudaSuccess) p = cudaGetDeviceProperties(prop, *device);
  if (p != cudaSuccess) {
    *why = "CUDA cannot read the GPU's properties (" + cuda_text(p) + ")";
    return false;
  }
  return true;
}

/**
 * Whether code built for `arch` runs on compute capability major.minor. codegen/build.ts builds sm_90
 * modules as sm_90a (architecture-specific: 9.0 only) and sm_80 modules as sm_80 SASS plus compute_80
 * PTX (8.0 and newer, JIT-compiled past 8.x).
 */
bool runs_on(const std::string& arch, int major, int minor, std::string* needs) {
  if (arch == "sm_90") {
    *needs = "compute capability 9.0 exactly (sm_90a code)";
    return major == 9 && minor == 0;
  }
  if (arch == "sm_80") {
    *needs = "compute capability 8.0 or newer";
    return major >= 8;
  }
  *needs = "a target this runtime knows (sm_80, sm_90)";
  return false;
}

class CudaDevice final : public Device {
 public:
  CudaDevice(int device, const cudaDeviceProp& prop, const std::string& arch) : device_(device) {
    name_ = "cuda:" + std::to_string(device) + " (" + prop.name + ", compute capability " + std::to_string(prop.major) +
            "." + std::to_string(prop.minor) + ", module " + arch + ")";
    check(cudaSetDevice(device), "cudaSetDevice");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    for (cudaEvent_t& e : marks_) check(cudaEventCreate(&e), "cudaEventCreate");
  }
  ~CudaDevice() override {
    cudaStreamSynchronize(stream_);
    for (cudaEvent_t e : marks_) cudaEventDestroy(e);
    cudaStreamDestroy(stream_);
  }
  std::string name() const override { return name_; }
  bool reads_host_memory() const override { return false; }
  void* alloc(size_t bytes, const std::string& what) override {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
      cudaGetLastError();  // an allocation failure is not sticky: clear it so later calls are unaffected
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw Error(name_ + ": cannot allocate " + std::to_string(bytes >> 20) + " MiB of device memory for " + what + " (" +
                  std::to_string(free_b >> 20) + " of " + std::to_string(total_b >> 20) + " MiB free; " + cuda_text(e) + ")");
    }
    return p;
  }
  void* alloc_zeroed(size_t bytes, const std::string& what) override {
    void* p = alloc(bytes, what);
    fill(p, 0, bytes);
    return p;
  }
  void release(void* p) noexcept override { cudaFree(p); }
  void upload(void* dst, const void* src, size_t bytes) override {
    if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync (host to device)");
  }
  void download(void* dst, const void* src, size_t bytes) override {
    if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync (device to host)");
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "cudaMemcpyAsync (device to device)");
  }
  void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width, size_t height) override {
    if (width && height)
      check(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, height, cudaMemcpyDeviceToDevice, stream_), "cudaMemcpy2DAsync");
  }
  void fill(void* dst, int byte, size_t bytes) override {
    if (bytes) check(cudaMemsetAsync(dst, byte, bytes, stream_), "cudaMemsetAsync");
  }
  void* stream() override { return stream_; }
  void synchronize() override { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }
  void mark(int i) override { check(cudaEventRecord(marks_[checked_mark(i)], stream_), "cudaEventRecord"); }
  double seconds(int from, int to) override {
    float ms = 0;
    check(cudaEventElapsedTime(&ms, marks_[checked_mark(from)], marks_[checked_mark(to)]), "cudaEventElapsedTime");
    return double(ms) / 1e3;
  }
  // Relaxed: the module's launchers may call cudaFuncSetAttribute and the like while work is recorded.
  bool can_capture() const override { return true; }
  void begin_capture() override { check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture"); }
  void* end_capture() override {
    cudaGraph_t graph = nullptr;
    check(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiateWithFlags(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(e, "cudaGraphInstantiateWithFlags");
    return exec;
  }
  void abort_capture() noexcept override {
    cudaGraph_t graph = nullptr;
    if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
    cudaGetLastError();  // the capture's failure, so that later calls are unaffected
  }
  void launch_graph(void* graph) override { check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), stream_), "cudaGraphLaunch"); }
  void release_graph(void* graph) noexcept override { cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph)); }

 private:
  void check(cudaError_t e, const char* what) const {
    if (e != cudaSuccess) throw Error(name_ + ": " + what + " failed (" + cuda_text(e) + ")");
  }

  int device_ = 0;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t marks_[kMarks] = {};
};

}  // namespace

std::unique_ptr<Device> make_cuda_device(const std::string& arch, const std::string& where) {
  int device = 0;
  cudaDeviceProp prop{};
  std::string why;
  if (!find_gpu(&device, &prop, &why)) throw Error(where + ": built for " + arch + ", but " + why);
  std::string needs;
  if (!runs_on(arch, prop.major, prop.minor, &needs))
    throw Error(where + ": built for " + arch + ", which needs " + needs + "; GPU " + std::to_string(device) + " (" + prop.name +
                ") is compute capability " + std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                " (build the module for this GPU's target)");
  return std::make_unique<CudaDevice>(device, prop, arch);
}

bool cuda_available(std::string* why) {
  int device = 0;
  cudaDeviceProp prop{};
  std::string reason;
  const bool ok = find_gpu(&device, &prop, &reason);
  if (why) *why = ok ? std::string() : reason;
  return ok;
}

}  // namespace md
