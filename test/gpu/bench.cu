// GPU suite bandwidth bench (nvcc only; built by the pack's CMakeLists.txt against the Llama-3.1-8B kit
// module and its kit_config.h). Times, with CUDA events after warm-ups, the median of repeated launches:
// - a device-to-device cudaMemcpy (bytes read + written): the in-run bandwidth ceiling;
// - decode attention (target pass, one row per sequence at the last position), verification attention
//   (gamma + 1 rows per sequence) and draft attention (the draft pass's policy) at batch 32/64/128/256 x
//   context 8K/32K over a paged cache of random values with shuffled pages (points that do not fit in
//   device memory are skipped and say so); bytes = the KV the rows can see, read once per sequence (what
//   the cost model assumes), plus q and out;
// - every GEMM of the model at 1..256 rows (and the fused LM head + argmax), weights rotated among copies
//   so that no launch reads them from L2; bytes = weights + x + y, against the weight-streaming limit
//   (weight bytes over the copy bandwidth).
// Usage: bench --json FILE [--quick]  (--quick: one context, two batches, fewer repeats).
#include "md_cuda.cuh"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kit_config.h"

#define CUDA_OK(x)                                                                                 \
  do {                                                                                             \
    cudaError_t e_ = (x);                                                                          \
    if (e_ != cudaSuccess) {                                                                       \
      std::printf("FATAL %s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));        \
      std::exit(2);                                                                                \
    }                                                                                              \
  } while (0)

static bool g_quick = false;
static int g_errors = 0;  // kernels that returned an error: the bench fails

/** Median milliseconds of `run` (which launches once on stream 0 and returns its status) after warm-ups. */
template <typename F>
static double time_ms(F run) {
  const int warm = 3, reps = g_quick ? 5 : 15;
  for (int i = 0; i < warm; ++i)
    if (run() != 0) return -1;
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<cudaEvent_t> ev(2 * reps);
  for (auto& e : ev) CUDA_OK(cudaEventCreate(&e));
  for (int i = 0; i < reps; ++i) {
    CUDA_OK(cudaEventRecord(ev[2 * i], 0));
    if (run() != 0) return -1;
    CUDA_OK(cudaEventRecord(ev[2 * i + 1], 0));
  }
  CUDA_OK(cudaEventSynchronize(ev.back()));
  CUDA_OK(cudaGetLastError());
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) CUDA_OK(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
  for (auto& e : ev) cudaEventDestroy(e);
  std::sort(ms.begin(), ms.end());
  return ms[reps / 2];
}

/** Random storage values in about +-2 (never zeros: zeros can run faster than real data). */
__global__ void fill_store(kit_store_t* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ull ^ seed;
    z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ull;
    z ^= z >> 29;
    p[i] = (kit_store_t)(((float)(z >> 40) * 0x1p-24f * 2.0f - 1.0f) * 2.0f);
  }
}
__global__ void fill_f32(float* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint64_t z = (i + 7) * 0xd1b54a32d192ed03ull ^ seed;
    z = (z ^ (z >> 29)) * 0x94d049bb133111ebull;
    z ^= z >> 32;
    p[i] = ((float)(z >> 40) * 0x1p-24f * 2.0f - 1.0f);
  }
}
template <typename T>
static T* dev_alloc(size_t n) {
  T* p = nullptr;
  return cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)) == cudaSuccess ? p : nullptr;
}

static std::string g_json;
static void add(const std::string& entry) { g_json += (g_json.empty() ? "\n  " : ",\n  ") + entry; }

static double copy_bandwidth() {
  const size_t bytes = (size_t)2 << 30;
  char *a = dev_alloc<char>(bytes), *b = dev_alloc<char>(bytes);
  if (!a || !b) return -1;
  CUDA_OK(cudaMemset(a, 0x5a, bytes));
  const double ms = time_ms([&] { return (int)cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0); });
  cudaFree(a), cudaFree(b);
  const double gbps = 2.0 * bytes / (ms * 1e-3) / 1e9;
  std::printf("copy: %zu MiB device-to-device in %.3f ms: %.0f GB/s (read + write)\n", bytes >> 20, ms, gbps);
  char e[256];
  std::snprintf(e, sizeof e, "{\"kind\": \"copy\", \"bytes\": %zu, \"ms\": %.5f, \"gbps\": %.1f}", 2 * bytes, ms, gbps);
  add(e);
  return gbps;
}

static int max_rows(int bucket) { return KIT_BUCKETS[bucket] * (KIT_GAMMA + 1); }
static int bucket_for(int rows) {
  for (int i = 0; i < KIT_NBUCKETS; ++i)
    if (rows <= max_rows(i)) return i;
  return -1;
}

static void attention(double copy_gbps) {
  const int H = KIT_HEADS, KH = KIT_KV_HEADS, D = KIT_HEAD_DIM, G1 = KIT_GAMMA + 1, PPS = KIT_PAGES_PER_SEQ;
  std::vector<int> batches = g_quick ? std::vector<int>{32, 64} : std::vector<int>{32, 64, 128, 256};
  std::vector<int> contexts = g_quick ? std::vector<int>{8192} : std::vector<int>{8192, 32768};
  for (int& L : contexts) L = std::min(L, (int)KIT_MAX_SEQ);
  const size_t pos_bytes = (size_t)KH * D * sizeof(kit_store_t);  // one position of K (or V)
  size_t free_b = 0, total_b = 0;
  CUDA_OK(cudaMemGetInfo(&free_b, &total_b));
  // The largest batch whose full-length cache (K and V, every page of every slot) leaves 4 GB free.
  int slots = 0;
  for (int b : batches)
    if ((double)b * PPS * KIT_PAGE * pos_bytes * 2 + (4.0 * (1 << 30)) < (double)free_b) slots = b;
  if (slots == 0) {
    add("{\"kind\": \"attention\", \"skipped\": \"no batch fits in device memory\"}");
    return;
  }
  const size_t elems = (size_t)slots * PPS * KIT_PAGE * KH * D;
  kit_store_t *kc = dev_alloc<kit_store_t>(elems), *vc = dev_alloc<kit_store_t>(elems);
  if (!kc || !vc) {
    add("{\"kind\": \"attention\", \"skipped\": \"cache allocation failed\"}");
    return;
  }
  fill_store<<<4096, 256>>>(kc, elems, 1);
  fill_store<<<4096, 256>>>(vc, elems, 2);
  std::vector<int32_t> table((size_t)slots * PPS);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(12345));
  int32_t* d_table = dev_alloc<int32_t>(table.size());
  CUDA_OK(cudaMemcpy(d_table, table.data(), table.size() * 4, cudaMemcpyHostToDevice));
  const int rows_max = slots * G1;
  float *q = dev_alloc<float>((size_t)rows_max * H * D), *out = dev_alloc<float>((size_t)rows_max * H * D);
  float* ws = dev_alloc<float>(md_attn_workspace_floats(std::min(rows_max, max_rows(KIT_NBUCKETS - 1))));
  int32_t *row_seq = dev_alloc<int32_t>(rows_max), *row_pos = dev_alloc<int32_t>(rows_max), *seq_len = dev_alloc<int32_t>(slots);
  float *tparams = dev_alloc<float>(std::max(1, KIT_TARGET_NPARAMS)), *dparams = dev_alloc<float>(std::max(1, KIT_DRAFT_NPARAMS));
  CUDA_OK(cudaMemcpy(tparams, kit_target_params, sizeof(float) * std::max(1, KIT_TARGET_NPARAMS), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dparams, kit_draft_params, sizeof(float) * std::max(1, KIT_DRAFT_NPARAMS), cudaMemcpyHostToDevice));
  fill_f32<<<1024, 256>>>(q, (size_t)rows_max * H * D, 3);
  CUDA_OK(cudaDeviceSynchronize());

  struct Kind {
    const char* name;
    const md_attn_fn* fns;
    float* params;
    bool (*visible)(int32_t, int32_t, const float*);
    const float* host_params;
    int rows_per_seq;
  } kinds[] = {{"decode", KIT_ATTN_TARGET, tparams, md_target_visible, kit_target_params, 1},
               {"verify", KIT_ATTN_TARGET, tparams, md_target_visible, kit_target_params, G1},
               {"draft", KIT_ATTN_DRAFT, dparams, md_draft_visible, kit_draft_params, 1}};
  for (int L : contexts)
    for (int B : batches)
      for (const Kind& k : kinds) {
        char e[512];
        const int rows = B * k.rows_per_seq, bk = bucket_for(rows);
        if (B > slots || bk < 0) {
          std::snprintf(e, sizeof e, "{\"kind\": \"attention\", \"pass\": \"%s\", \"batch\": %d, \"context\": %d, \"skipped\": \"%s\"}", k.name, B, L,
                        B > slots ? "does not fit in device memory" : "no bucket holds the rows");
          add(e);
          std::printf("attention %-6s B %3d L %5d: skipped\n", k.name, B, L);
          continue;
        }
        std::vector<int32_t> rs(rows), rp(rows), sl(B, L);
        for (int r = 0; r < rows; ++r) rs[r] = r / k.rows_per_seq, rp[r] = L - k.rows_per_seq + r % k.rows_per_seq;
        CUDA_OK(cudaMemcpy(row_seq, rs.data(), rows * 4, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(row_pos, rp.data(), rows * 4, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(seq_len, sl.data(), B * 4, cudaMemcpyHostToDevice));
        md_attn_args a;
        a.q = q, a.k_cache = kc, a.v_cache = vc, a.page_table = d_table, a.pages_per_seq = PPS, a.row_seq = row_seq, a.row_pos = row_pos;
        a.seq_len = seq_len, a.rows = rows, a.params = k.params, a.out = out, a.workspace = ws, a.stream = nullptr;
        // The positions the sequence's last row can see (the verify rows see at most gamma fewer).
        int visible = 0;
        for (int t = 0; t < L; ++t) visible += k.visible(L - 1, t, k.host_params);
        const double bytes = (double)B * visible * pos_bytes * 2 + (double)rows * H * D * 4 * 2;
        const double ms = time_ms([&] { return k.fns[bk](&a); });
        if (ms < 0) {
          ++g_errors;
          std::printf("attention %s B %d L %d: the kernel returned an error\n", k.name, B, L);
          std::snprintf(e, sizeof e, "{\"kind\": \"attention\", \"pass\": \"%s\", \"batch\": %d, \"context\": %d, \"error\": \"kernel returned an error\"}",
                        k.name, B, L);
          add(e);
          continue;
        }
        const double gbps = bytes / (ms * 1e-3) / 1e9;
        std::printf("attention %-6s B %3d L %5d rows %4d: %8.3f ms, %6.0f GB/s (%.0f%% of copy)\n", k.name, B, L, rows, ms, gbps, 100 * gbps / copy_gbps);
        std::snprintf(e, sizeof e,
                      "{\"kind\": \"attention\", \"pass\": \"%s\", \"batch\": %d, \"context\": %d, \"rows\": %d, \"bucket\": %d, \"visible\": %d, "
                      "\"bytes\": %.0f, \"ms\": %.5f, \"gbps\": %.1f, \"of_copy\": %.4f}",
                      k.name, B, L, rows, KIT_BUCKETS[bk], visible, bytes, ms, gbps, gbps / copy_gbps);
        add(e);
      }
  cudaFree(kc), cudaFree(vc), cudaFree(d_table), cudaFree(q), cudaFree(out), cudaFree(ws), cudaFree(row_seq), cudaFree(row_pos), cudaFree(seq_len);
  cudaFree(tparams), cudaFree(dparams);
}

static void gemms(double copy_gbps) {
  const int last = KIT_NBUCKETS - 1;
  std::vector<int> ms_rows = g_quick ? std::vector<int>{1, 64} : std::vector<int>{1, 32, 64, 128, 256};
  for (int role = 0; role <= 6; ++role) {  // 6: the fused LM head + argmax
    const int g = role == 6 ? 5 : role, N = KIT_GEMM_N[g], K = KIT_GEMM_K[g];
    const char* name = role == 6 ? "lm_head_argmax" : KIT_GEMM_NAME[g];
    const size_t wbytes = (size_t)N * K * sizeof(kit_store_t);
    const int copies = (int)std::max<size_t>(1, ((size_t)512 << 20) / wbytes + 1);  // > 8x the L2 in all
    std::vector<kit_store_t*> w(copies);
    for (auto& p : w) {
      p = dev_alloc<kit_store_t>((size_t)N * K);
      if (!p) {
        std::printf("gemm %s: allocation failed\n", name);
        return;
      }
      fill_store<<<2048, 256>>>(p, (size_t)N * K, (uint64_t)(uintptr_t)p);
    }
    const int rows_cap = std::min(256, max_rows(last));
    float *x = dev_alloc<float>((size_t)rows_cap * K), *y = dev_alloc<float>((size_t)rows_cap * N), *bias = dev_alloc<float>(N);
    int32_t* tok = dev_alloc<int32_t>(rows_cap);
    fill_f32<<<1024, 256>>>(x, (size_t)rows_cap * K, 9);
    fill_f32<<<64, 256>>>(bias, N, 10);
    CUDA_OK(cudaDeviceSynchronize());
    for (int M : ms_rows) {
      if (M > rows_cap) continue;
      const int bk = bucket_for(M);
      int next = 0;
      const double ms = time_ms([&] {
        const void* wp = w[next++ % copies];
        return role == 6 ? KIT_LM_HEAD_ARGMAX[bk](x, wp, nullptr, tok, M, nullptr)
                         : KIT_GEMM[g][bk](x, wp, KIT_GEMM_BIAS[g] ? bias : nullptr, y, M, nullptr);
      });
      char e[512];
      if (ms < 0) {
        ++g_errors;
        std::printf("gemm %s M %d: the kernel returned an error\n", name, M);
        std::snprintf(e, sizeof e, "{\"kind\": \"gemm\", \"name\": \"%s\", \"rows\": %d, \"error\": \"kernel returned an error\"}", name, M);
        add(e);
        continue;
      }
      const double bytes = (double)wbytes + (double)M * K * 4 + (role == 6 ? (double)M * 4 : (double)M * N * 4);
      const double limit_ms = wbytes / (copy_gbps * 1e9) * 1e3;
      std::printf("gemm %-14s M %3d N %6d K %5d: %8.4f ms, %6.0f GB/s, %.0f%% of the weight-streaming limit (%.4f ms)\n", name, M, N, K, ms,
                  bytes / (ms * 1e-3) / 1e9, 100 * limit_ms / ms, limit_ms);
      std::snprintf(e, sizeof e,
                    "{\"kind\": \"gemm\", \"name\": \"%s\", \"rows\": %d, \"n\": %d, \"k\": %d, \"bucket\": %d, \"bytes\": %.0f, \"ms\": %.5f, "
                    "\"gbps\": %.1f, \"stream_limit_ms\": %.5f, \"of_limit\": %.4f}",
                    name, M, N, K, KIT_BUCKETS[bk], bytes, ms, bytes / (ms * 1e-3) / 1e9, limit_ms, limit_ms / ms);
      add(e);
    }
    for (auto p : w) cudaFree(p);
    cudaFree(x), cudaFree(y), cudaFree(bias), cudaFree(tok);
  }
}

int main(int argc, char** argv) {
  const char* json = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json = argv[++i];
    else if (a == "--quick") g_quick = true;
    else {
      std::printf("usage: %s --json FILE [--quick] (unknown argument '%s')\n", argv[0], argv[i]);
      return 2;
    }
  }
  cudaDeviceProp prop;
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  std::printf("bench: %s on %s (%d SMs)\n", KIT_NAME, prop.name, prop.multiProcessorCount);
  const double copy = copy_bandwidth();
  if (copy <= 0) {
    std::printf("FATAL: the copy bandwidth could not be measured\n");
    return 2;
  }
  attention(copy);
  gemms(copy);
  if (json) {
    FILE* f = std::fopen(json, "w");
    if (!f) return 2;
    std::fprintf(f, "{\"module\": \"%s\", \"device\": \"%s\", \"copy_gbps\": %.1f, \"results\": [%s]}\n", KIT_NAME, prop.name, copy, g_json.c_str());
    std::fclose(f);
  }
  if (g_errors) std::printf("FAIL: %d kernel calls returned an error\n", g_errors);
  return g_errors ? 1 : 0;
}
