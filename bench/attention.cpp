// Times one layer's attention kernels of a CPU module (bench/attention.ts builds the module and this file,
// and passes the shape): AR decode (one row per sequence), verification (gamma + 1 rows per sequence),
// a draft step, and a prefill chunk, each over a paged bf16/fp16/fp32 KV cache filled with random values.
// Every mode is timed in the same process, so the ratios between them are what the lead reads.
//
// usage: attention <module.so[,baseline.so...]> <elem bytes> <kv heads> <heads> <head dim> <page size> <batch> <gamma>
//                  <context> <draft params, comma-separated> <prefill rows> <reps> <modes, comma-separated>
//                  <buckets, comma-separated, ascending>  (each call takes the smallest bucket that holds its rows)
// Prints one JSON object per mode and module: {"mode", "lib", "rows", "best_s", "median_s", "cpu_s"}: best and
// median wall time of a call, and the least CPU time (all threads) a call took — on a machine shared with
// other work, run with OMP_WAIT_POLICY=passive, CPU time / threads is the steadier measure of the kernel's
// own cost. With several modules (an A/B comparison of two builds of the same shapes), their calls
// alternate, so that the machine's drift between minutes falls on all of them alike, and each module after
// the first also reports "paired_ratio": the median over repetitions of its time over the first module's
// time in the same repetition, and "same_bits": whether its output equals the first module's bitwise.
#include <dlfcn.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "md_abi.h"

static void die(const char* what) {
  fprintf(stderr, "attention bench: %s\n", what);
  exit(1);
}

static std::vector<std::string> split(const char* s) {
  std::vector<std::string> out;
  std::string cur;
  for (const char* p = s;; ++p) {
    if (*p == ',' || *p == 0) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
      if (!*p) break;
    } else {
      cur += *p;
    }
  }
  return out;
}

static uint64_t next(uint64_t& s) {  // splitmix64
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/** A uniform value in [-1, 1) in the storage dtype's bits. */
static void fill(void* p, size_t n, int elem, uint64_t seed) {
#pragma omp parallel
  {
    uint64_t s = seed * 7919 + (uint64_t)omp_get_thread_num();
#pragma omp for schedule(static)
    for (size_t i = 0; i < n; ++i) {
      const float x = (float)((next(s) >> 40) * (1.0 / (1 << 24))) * 2.0f - 1.0f;
      uint32_t u;
      memcpy(&u, &x, 4);
      if (elem == 4) ((float*)p)[i] = x;
      else ((uint16_t*)p)[i] = (uint16_t)(u >> 16);  // bf16 by truncation; the same bits read as fp16 are finite
    }
  }
}

int main(int argc, char** argv) {
  if (argc != 15) die("usage: attention <module.so> <elem bytes> <kv heads> <heads> <head dim> <page size> <batch> <gamma> <context> <draft params> <prefill rows> <reps> <modes> <buckets>");
  std::vector<void*> libs;
  for (const auto& path : split(argv[1])) {
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) die(dlerror());
    libs.push_back(lib);
  }
  if (libs.empty()) die("no module");
  const int elem = atoi(argv[2]), kv_heads = atoi(argv[3]), heads = atoi(argv[4]), head_dim = atoi(argv[5]);
  const int page = atoi(argv[6]), batch = atoi(argv[7]), gamma = atoi(argv[8]), context = atoi(argv[9]);
  std::vector<float> draft_params;
  for (const auto& p : split(argv[10])) draft_params.push_back((float)atof(p.c_str()));
  if (draft_params.empty()) draft_params.push_back(0.0f);
  const int prefill_rows = atoi(argv[11]), reps = atoi(argv[12]);
  const std::vector<std::string> modes = split(argv[13]);
  std::vector<int> buckets;
  for (const auto& b : split(argv[14])) buckets.push_back(atoi(b.c_str()));

  const int kv_dim = kv_heads * head_dim;
  const int positions = context + gamma + 1;
  const int pages_per_seq = (positions + page - 1) / page;
  const size_t cache_elems = (size_t)batch * pages_per_seq * page * kv_dim;
  void* k = aligned_alloc(64, cache_elems * elem);
  void* v = aligned_alloc(64, cache_elems * elem);
  if (!k || !v) die("no memory for the KV cache");
  fill(k, cache_elems, elem, 1);
  fill(v, cache_elems, elem, 2);
  // Slot s owns pages [s * pages_per_seq, (s + 1) * pages_per_seq), as a fresh engine hands them out.
  std::vector<int32_t> page_table((size_t)batch * pages_per_seq);
  for (size_t i = 0; i < page_table.size(); ++i) page_table[i] = (int32_t)i;
  std::vector<int32_t> seq_len(batch, context);

  const int max_rows = std::max(batch * (gamma + 1), prefill_rows);
  std::vector<float> q((size_t)max_rows * heads * head_dim), out(q.size());
  fill(q.data(), q.size(), 4, 3);
  size_t ws_floats = 0;
  for (void* lib : libs) {
    auto workspace_floats = (md_attn_workspace_floats_fn)dlsym(lib, "md_attn_workspace_floats");
    if (!workspace_floats) die("a module has no md_attn_workspace_floats");
    ws_floats = std::max(ws_floats, (size_t)workspace_floats(max_rows));
  }
  std::vector<float> ws(ws_floats);

  for (const std::string& mode : modes) {
    std::vector<int32_t> row_seq, row_pos;
    std::string symbol;
    const float* params = nullptr;
    if (mode == "ar" || mode == "draft") {
      for (int b = 0; b < batch; ++b) row_seq.push_back(b), row_pos.push_back(context - 1);
      symbol = mode == "ar" ? "md_attn_target_b" : "md_attn_draft_b";
      if (mode == "draft") params = draft_params.data();
    } else if (mode == "verify") {
      for (int b = 0; b < batch; ++b)
        for (int i = 0; i <= gamma; ++i) row_seq.push_back(b), row_pos.push_back(context - gamma - 1 + i);
      symbol = "md_attn_target_b";
    } else if (mode == "prefill") {  // the last chunk of sequence 0's prompt
      for (int i = 0; i < prefill_rows; ++i) row_seq.push_back(0), row_pos.push_back(context - prefill_rows + i);
      symbol = "md_attn_target_b";
    } else {
      die(("unknown mode " + mode).c_str());
    }
    int bucket = 0;
    for (int b : buckets)
      if (!bucket && (int)row_seq.size() <= b * (gamma + 1)) bucket = b;
    if (!bucket) die(("no bucket holds the rows of " + mode).c_str());
    symbol += std::to_string(bucket);
    std::vector<md_attn_fn> fns;
    for (void* lib : libs) {
      auto fn = (md_attn_fn)dlsym(lib, symbol.c_str());
      if (!fn) die(("a module has no " + symbol).c_str());
      fns.push_back(fn);
    }
    md_attn_args a = {};
    a.q = q.data();
    a.k_cache = k;
    a.v_cache = v;
    a.page_table = page_table.data();
    a.pages_per_seq = pages_per_seq;
    a.row_seq = row_seq.data();
    a.row_pos = row_pos.data();
    a.seq_len = seq_len.data();
    a.rows = (int32_t)row_seq.size();
    a.params = params ? params : draft_params.data();
    a.out = out.data();
    a.workspace = ws.data();
    const size_t n = libs.size();
    std::vector<std::vector<double>> times(n);
    std::vector<double> cpu(n, 1e30);
    std::vector<std::vector<float>> first_out(n);
    for (int r = 0; r < reps + 1; ++r) {
      for (size_t j = 0; j < n; ++j) {
        const size_t m = r % 2 ? n - 1 - j : j;  // alternate the order, so neither module always follows the other
        timespec c0, c1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        const auto t0 = std::chrono::steady_clock::now();
        if (fns[m](&a) != MD_OK) die(("status from " + symbol).c_str());
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        if (r == 0) {  // the first call warms the caches' page tables; its output is the module's answer
          first_out[m].assign(out.begin(), out.begin() + (size_t)a.rows * heads * head_dim);
          continue;
        }
        times[m].push_back(dt);
        cpu[m] = std::min(cpu[m], (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec));
      }
    }
    for (size_t m = 0; m < n; ++m) {
      std::vector<double> sorted = times[m];
      std::sort(sorted.begin(), sorted.end());
      printf("{\"mode\":\"%s\",\"lib\":%zu,\"rows\":%d,\"best_s\":%.9g,\"median_s\":%.9g,\"cpu_s\":%.9g", mode.c_str(), m, a.rows, sorted[0], sorted[sorted.size() / 2], cpu[m]);
      if (m > 0) {
        std::vector<double> ratio;
        for (int r = 0; r < reps; ++r) ratio.push_back(times[m][r] / times[0][r]);
        std::sort(ratio.begin(), ratio.end());
        const bool same = memcmp(first_out[m].data(), first_out[0].data(), first_out[0].size() * sizeof(float)) == 0;
        printf(",\"paired_ratio\":%.6g,\"same_bits\":%s", ratio[ratio.size() / 2], same ? "true" : "false");
      }
      printf("}\n");
    }
    fflush(stdout);
  }
  free(k);
  free(v);
  return 0;
}
