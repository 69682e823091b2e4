// STREAM-style triad, a[i] = b[i] + s * c[i], the benchmark's yardstick for memory bandwidth: built with the
// same host flags as the CPU modules (-O3 -march=native -fopenmp) and run with the same OpenMP threads as
// the decode. Bytes are counted as STREAM counts them, 3 arrays x size per repetition (the write-allocate
// read of a[] is not counted); the best repetition is reported.
//
// usage: triad <bytes per array> <repetitions>; prints one JSON object on stdout.
#include <omp.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

bool parse_count(const char* s, long long min, long long* out) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min) return false;
  *out = v;
  return true;
}

double* alloc(size_t n) {
  size_t bytes = (n * sizeof(double) + 63) / 64 * 64;
  return static_cast<double*>(std::aligned_alloc(64, bytes));
}

}  // namespace

int main(int argc, char** argv) {
  long long array_bytes = 0, reps = 0;
  if (argc != 3 || !parse_count(argv[1], 64, &array_bytes) || !parse_count(argv[2], 1, &reps)) {
    std::fprintf(stderr, "usage: triad <bytes per array, at least 64> <repetitions, at least 1>\n");
    return 2;
  }
  const int64_t n = array_bytes / int64_t(sizeof(double));
  double* a = alloc(size_t(n));
  double* b = alloc(size_t(n));
  double* c = alloc(size_t(n));
  if (!a || !b || !c) {
    std::fprintf(stderr, "triad: cannot allocate 3 arrays of %lld bytes\n", array_bytes);
    return 1;
  }
  // First touch with the triad's own static schedule, so each page sits near the thread that streams it.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    a[i] = 0.0;
    b[i] = 1.0;
    c[i] = 2.0;
  }

  double best = INFINITY, total = 0.0, s = 0.0;
  for (long long r = 0; r < reps; ++r) {
    s = 3.0 + double(r);  // a new scalar each repetition: no repetition can be elided as a repeat of the last
    const double t0 = omp_get_wtime();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
    const double t = omp_get_wtime() - t0;
    best = t < best ? t : best;
    total += t;
  }
  // Every element must hold the last repetition's exact result (small integers are exact in double).
  const double want = 1.0 + s * 2.0;
  for (int64_t i = 0; i < n; ++i)
    if (a[i] != want) {
      std::fprintf(stderr, "triad: a[%lld] = %.17g, expected %.17g\n", (long long)i, a[i], want);
      return 1;
    }
  const double bytes = 3.0 * double(n) * double(sizeof(double));
  std::printf("{\"threads\":%d,\"arrayBytes\":%lld,\"reps\":%lld,\"bytesPerRep\":%.0f,\"bestS\":%.9g,\"meanS\":%.9g,\"gbPerS\":%.6g}\n",
              omp_get_max_threads(), (long long)(n * int64_t(sizeof(double))), reps, bytes, best, total / double(reps),
              best > 0 ? bytes / best / 1e9 : 0.0);
  std::free(a);
  std::free(b);
  std::free(c);
  return 0;
}
