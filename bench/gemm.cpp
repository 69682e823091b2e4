// Standalone GEMM driver (bench/gemm.ts builds and runs it): dlopens a CPU module and times its dense
// projections against a STREAM triad measured in the same process, with the same OpenMP threads.
//
// usage: gemm <library> <pool bytes> <triad bytes> <seconds per point> <weight bytes per element> <case>...
//   case = <symbol>:<N>:<K>:<rows>  (a symbol starting md_lm_head_argmax_ is called with that signature)
// The weights cycle through a pool of copies totalling at least <pool bytes> (several times the last-level
// cache when memory speed is claimed), so each call streams its weights from DRAM. Prints one JSON object
// per line: the triad (3 arrays totalling <triad bytes>) first and last, one per case between.
#include <dlfcn.h>
#include <omp.h>

#include <time.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

typedef int (*gemm_fn)(const float*, const void*, const void*, float*, int32_t, void*);
typedef int (*lm_fn)(const float*, const void*, float*, int32_t*, int32_t, void*);

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

void* alloc(size_t bytes) { return std::aligned_alloc(64, (bytes + 63) / 64 * 64); }

double triad_gbps(size_t array_bytes, int reps) {
  const size_t n = array_bytes / sizeof(double);
  double* a = (double*)alloc(array_bytes);
  double* b = (double*)alloc(array_bytes);
  double* c = (double*)alloc(array_bytes);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) a[i] = 0.0, b[i] = 1.0, c[i] = 2.0;
  double best = INFINITY;
  for (int r = 0; r < reps; ++r) {
    const double s = 3.0 + r, t0 = omp_get_wtime();
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
    const double t = omp_get_wtime() - t0;
    best = t < best ? t : best;
  }
  std::free(a), std::free(b), std::free(c);
  return 3.0 * n * sizeof(double) / best / 1e9;
}

// bf16/fp16/fp32 bit patterns of small random values (|v| < 0.5, no NaN or infinity in any dtype).
void fill_weights(uint8_t* w, size_t count, int bytes, uint32_t seed) {
  uint32_t s = seed;
  auto next = [&] { return s = s * 1664525u + 1013904223u; };
  for (size_t i = 0; i < count; ++i) {
    const float v = ((next() >> 8) * (1.0f / 16777216.0f) - 0.5f) * 0.5f;
    uint32_t u;
    std::memcpy(&u, &v, 4);
    if (bytes == 4) std::memcpy(w + i * 4, &u, 4);
    else if (bytes == 2) {
      // bf16 by truncation is fine for bf16; for fp16 the same bits are a finite half (exponent < 31).
      uint16_t h = (uint16_t)(u >> 16);
      if ((h & 0x7c00u) == 0x7c00u) h &= 0x83ffu;
      std::memcpy(w + i * 2, &h, 2);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: gemm <library> <pool bytes> <triad bytes> <seconds> <weight bytes> <symbol:N:K:rows>...\n");
    return 2;
  }
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    std::fprintf(stderr, "gemm: %s\n", dlerror());
    return 1;
  }
  const double pool_bytes = std::atof(argv[2]), triad_bytes = std::atof(argv[3]), seconds = std::atof(argv[4]);
  const int wbytes = std::atoi(argv[5]);
  std::printf("{\"triad\":%.4g,\"threads\":%d}\n", triad_gbps(size_t(triad_bytes / 3), 8), omp_get_max_threads());
  std::fflush(stdout);
  for (int a = 6; a < argc; ++a) {
    char sym[256];
    int n = 0, k = 0, rows = 0;
    if (std::sscanf(argv[a], "%255[^:]:%d:%d:%d", sym, &n, &k, &rows) != 4 || n <= 0 || k <= 0 || rows <= 0) {
      std::fprintf(stderr, "gemm: bad case '%s'\n", argv[a]);
      return 2;
    }
    void* f = dlsym(lib, sym);
    if (!f) {
      std::fprintf(stderr, "gemm: no symbol %s\n", sym);
      return 1;
    }
    const bool lm = std::strncmp(sym, "md_lm_head_argmax_", 18) == 0;
    const size_t wsize = (size_t)n * k * wbytes;
    const int copies = std::max(1, (int)std::ceil(pool_bytes / (double)wsize));
    std::vector<uint8_t*> pool(copies);
    for (int c = 0; c < copies; ++c) {
      pool[c] = (uint8_t*)alloc(wsize);
      fill_weights(pool[c], (size_t)n * k, wbytes, 7 + c);
    }
    std::vector<float> x((size_t)rows * k), y((size_t)rows * n);
    std::vector<int32_t> tok(rows);
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * i);
    auto call = [&](int c) {
      const int st = lm ? ((lm_fn)f)(x.data(), pool[c], y.data(), tok.data(), rows, nullptr)
                        : ((gemm_fn)f)(x.data(), pool[c], nullptr, y.data(), rows, nullptr);
      if (st != 0) {
        std::fprintf(stderr, "gemm: %s returned status %d\n", sym, st);
        std::exit(1);
      }
    };
    for (int c = 0; c < copies; ++c) call(c);  // warm: page in every copy once
    // Best of 5 batches (each at least seconds / 5 long), the fastest single call, and the process CPU
    // time per call over the threads: on a shared machine the last two are the least disturbed (CPU time
    // counts no time spent descheduled; run with OMP_WAIT_POLICY=passive so that waiting threads sleep).
    double best = INFINITY, fastest = INFINITY, cpu = INFINITY;
    long calls = 0;
    for (int batch = 0; batch < 5; ++batch) {
      long m = 0;
      const double t0 = omp_get_wtime(), c0 = cpu_seconds();
      double t = 0, prev = t0;
      do {
        call((int)(m++ % copies));
        const double now = omp_get_wtime();
        fastest = std::min(fastest, now - prev);
        prev = now;
        t = now - t0;
      } while (t < seconds / 5 || m < copies);
      best = std::min(best, t / m);
      cpu = std::min(cpu, (cpu_seconds() - c0) / m / omp_get_max_threads());
      calls += m;
    }
    const double flops = 2.0 * rows * n * k;
    std::printf("{\"symbol\":\"%s\",\"n\":%d,\"k\":%d,\"rows\":%d,\"poolMB\":%.0f,\"calls\":%ld,\"us\":%.4g,\"minUs\":%.4g,\"cpuUs\":%.4g,\"weightGBps\":%.4g,\"gflops\":%.4g}\n",
                sym, n, k, rows, copies * wsize / 1e6, calls, best * 1e6, fastest * 1e6, cpu * 1e6,
                wsize / std::min(fastest, cpu) / 1e9, flops / std::min(fastest, cpu) / 1e9);
    std::fflush(stdout);
    for (uint8_t* p : pool) std::free(p);
  }
  std::printf("{\"triad\":%.4g,\"threads\":%d}\n", triad_gbps(size_t(triad_bytes / 3), 8), omp_get_max_threads());
  return 0;
}
