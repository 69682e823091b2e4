// GPU kit driver: checks one generated CUDA module on a real GPU, without Node. Built once per module
// against its sources and its kit_config.h (shapes, dtype, host copies of the passes' predicates, entry
// point tables, all written by scripts/gpu/kit.ts). For every kernel: fresh random inputs, outputs
// poisoned with NaN before each call, a float64 reference computed here, a relative error bound (row
// inf-norm), and bitwise row invariance (a row alone == in a batch == among gamma+1 verify rows == in
// another bucket); the fused LM head + argmax also bitwise against gemm_lm_head + argmax. Prints a
// summary; exits 1 if any check failed. Philox4x32-10 (md_philox.h) on the device gives the Random123
// known answers and the host's bits, and so do the uniforms and the Gumbel noise (md_sampling.h). Built
// with g++ -x c++ -DMD_SIMT_EMU it runs, unchanged, on the CPU under the SIMT emulator (md_simt_emu.h;
// test/emu/kit.test.ts): the kit's own checks run in CI.
//
// Usage: driver [--seed N] [--short] [--json FILE]. --seed fixes the inputs (default: a fresh seed, printed);
// --short is the sanitizer run (fewer rows, buckets and positions: every kernel still runs); --json writes
// per-group check counts, worst relative errors and the first failures. MD_KIT_TOL overrides every
// tolerances (the suite's dry run sets a wrong one on purpose to see failures reported). md_sample and
// md_verify_sample are held to the CPU backend's kernels for the same deployment (ref/sample.cpp, built
// with its entry points renamed ref_md_*), which model/sampling.ts pins bit for bit.
#include "md_cuda.cuh"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

#include "kit_config.h"
#include "md_sampling.h"

// The CPU backend's sampling kernels for this deployment (ref/sample.cpp, entry points renamed).
extern "C" decltype(md_sample) ref_md_sample;
extern "C" decltype(md_verify_sample) ref_md_verify_sample;

static int g_checks = 0, g_failed = 0;
static bool g_short = false;
static double g_tol = KIT_TOL, g_tol_gemm = KIT_TOL_GEMM, g_tol_act = KIT_TOL_ACT;

/** Checks are counted per group (one kernel family), with the worst relative error seen. */
struct Group {
  std::string name;
  int checks = 0, failed = 0;
  double worst = 0, tol = 0;
};
static std::vector<Group> g_groups;
static std::vector<std::string> g_failures;
static void group(const char* name, double tol = 0) {
  g_groups.push_back(Group());
  g_groups.back().name = name;
  g_groups.back().tol = tol;
  std::printf("  %s\n", name);
  std::fflush(stdout);
}
static Group& cur() {
  if (g_groups.empty()) group("setup");
  return g_groups.back();
}
/** Records a relative error against the group's bound (NaN is worst of all). */
static void note_err(double e) {
  Group& g = cur();
  if (!(e == e) || !(g.worst == g.worst)) g.worst = NAN;
  else g.worst = std::max(g.worst, e);
}

static void check(bool ok, const char* fmt, ...) {
  ++g_checks;
  ++cur().checks;
  if (ok) return;
  ++g_failed;
  ++cur().failed;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::printf("  FAIL %s\n", msg);
  if (g_failures.size() < 50) g_failures.push_back(msg);
}

/** Runs f(i) for i in [0, n) on every host core (the float64 references of the large shapes). */
template <typename F>
static void parallel_for(int n, F f) {
  const int t = std::max(1, std::min(n, (int)std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (int w = 0; w < t; ++w)
    pool.emplace_back([&, w] {
      for (int i = w; i < n; i += t) f(i);
    });
  for (auto& th : pool) th.join();
}

#define CUDA_OK(x)                                                                                   \
  do {                                                                                               \
    cudaError_t e_ = (x);                                                                            \
    if (e_ != cudaSuccess) {                                                                         \
      std::printf("  FATAL %s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));        \
      std::exit(2);                                                                                  \
    }                                                                                                \
  } while (0)

#define MD_CALL(x) check((x) == MD_OK && cudaDeviceSynchronize() == cudaSuccess, "%s returned an error", #x)

static std::mt19937_64 g_rng(0x6d616769636465ull);
static float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }
/** Bulk uniforms in [-scale, scale): splitmix64 from one draw of g_rng (the weights of 8B-sized matrices). */
struct Fast {
  uint64_t s = g_rng();
  float operator()(float scale) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return ((float)(z >> 40) * 0x1p-24f * 2.0f - 1.0f) * scale;
  }
};
static int rand_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g_rng); }

static float widen(kit_store_t x) { return (float)x; }
static kit_store_t narrow(float x) { return (kit_store_t)x; }

/** Device buffer with host mirror. */
template <typename T>
struct Buf {
  std::vector<T> h;
  T* d = nullptr;
  explicit Buf(size_t n) : h(n) { CUDA_OK(cudaMalloc(&d, std::max<size_t>(n, 1) * sizeof(T))); }
  ~Buf() { cudaFree(d); }
  Buf(const Buf&) = delete;
  void up() { CUDA_OK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T>& down() {
    CUDA_OK(cudaMemcpy(h.data(), d, h.size() * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  /** All bytes 0xff: NaN for floats, -1 for ints; an output the kernel forgets to write stays poison. */
  void poison() { CUDA_OK(cudaMemset(d, 0xff, h.size() * sizeof(T))); }
  size_t size() const { return h.size(); }
};

/** Random storage values with an exact float copy for the reference. */
struct Weights {
  Buf<kit_store_t> buf;
  std::vector<float> f;
  Weights(size_t n, float scale) : buf(n), f(n) {
    Fast r;
    for (size_t i = 0; i < n; ++i) {
      buf.h[i] = narrow(r(scale));
      f[i] = widen(buf.h[i]);
    }
    buf.up();
  }
};

static void fill(Buf<float>& b, float scale) {
  Fast r;
  for (auto& x : b.h) x = r(scale);
  b.up();
}

/** max |got - ref| / max(max |ref|, floor) over one row; NaN when anything is NaN. */
static double rel_err(const float* got, const double* ref, size_t n, double floor = 1e-30, const double* slack = nullptr) {
  double num = 0, den = floor;
  for (size_t i = 0; i < n; ++i) {
    const double diff = std::fabs((double)got[i] - ref[i]);
    if (!(diff == diff)) return NAN;  // before the slack: std::max(0.0, NaN) is 0
    const double e = slack ? std::max(0.0, diff - slack[i]) : diff;
    num = std::max(num, e);
    den = std::max(den, std::fabs(ref[i]));
  }
  return num / den;
}

static bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

/** Smallest bucket holding `rows` rows; -1 if none. */
static int bucket_for(int rows) {
  for (int i = 0; i < KIT_NBUCKETS; ++i)
    if (rows <= KIT_BUCKETS[i] * (KIT_GAMMA + 1)) return i;
  return -1;
}
static int max_rows(int bucket) { return KIT_BUCKETS[bucket] * (KIT_GAMMA + 1); }

// ------------------------------------------------------------------------------------------------- GEMM

/** The columns a float64 reference covers: all of them, or an even spread (first and last included) when
 *  rows x columns x depth would pass ~2^31 multiply-adds (the 8B model's LM head). */
static std::vector<int> ref_cols(int rows, int n, int k) {
  const double budget = 2.2e9;
  const int stride = std::max(1, (int)std::ceil((double)rows * n * k / budget));
  std::vector<int> c;
  for (int i = 0; i < n; i += stride) c.push_back(i);
  if (c.back() != n - 1) c.push_back(n - 1);
  return c;
}

/** rel_err over the columns `cols` of one output row against their references. */
static double rel_err_cols(const float* got, const double* ref, const std::vector<int>& cols) {
  std::vector<float> g(cols.size());
  for (size_t i = 0; i < cols.size(); ++i) g[i] = got[cols[i]];
  return rel_err(g.data(), ref, cols.size());
}

static void test_gemm(int role) {
  const int N = KIT_GEMM_N[role], K = KIT_GEMM_K[role];
  const int last = KIT_NBUCKETS - 1, R = std::min(max_rows(last), g_short ? 8 : 256);
  char name[64];
  std::snprintf(name, sizeof name, "gemm_%s", KIT_GEMM_NAME[role]);
  group(name, g_tol_gemm);
  Buf<float> x((size_t)R * K), y((size_t)R * N), y1(N);
  fill(x, 1.0f);
  Weights w((size_t)N * K, 0.5f), bias(N, 0.5f);
  const void* b = KIT_GEMM_BIAS[role] ? bias.buf.d : nullptr;
  const std::vector<int> cols = ref_cols(R, N, K);
  const size_t C = cols.size();
  std::vector<double> ref((size_t)R * C);
  parallel_for(R, [&](int r) {
    for (size_t c = 0; c < C; ++c) {
      const int n = cols[c];
      double s = KIT_GEMM_BIAS[role] ? bias.f[n] : 0.0;
      for (int k = 0; k < K; ++k) s += (double)x.h[(size_t)r * K + k] * w.f[(size_t)n * K + k];
      ref[(size_t)r * C + c] = s;
    }
  });
  std::vector<float> first;
  for (int bk = 0; bk < KIT_NBUCKETS; ++bk) {
    if (g_short && bk != 0 && bk != last) continue;
    const int rows = std::min(R, max_rows(bk));
    y.poison();
    MD_CALL(KIT_GEMM[role][bk](x.d, w.buf.d, b, y.d, rows, nullptr));
    y.down();
    for (int r = 0; r < rows; ++r) {
      const double e = rel_err_cols(&y.h[(size_t)r * N], &ref[(size_t)r * C], cols);
      note_err(e);
      check(e <= g_tol_gemm, "gemm_%s b%d row %d: relative error %g > %g", KIT_GEMM_NAME[role], KIT_BUCKETS[bk], r, e, g_tol_gemm);
    }
    bool written = true;  // every column, also those the reference skips
    for (size_t i = 0; i < (size_t)rows * N; ++i) written &= y.h[i] == y.h[i];
    check(written, "gemm_%s b%d: NaN in the output (an element left unwritten?)", KIT_GEMM_NAME[role], KIT_BUCKETS[bk]);
    if (bk == 0) first.assign(y.h.begin(), y.h.begin() + (size_t)rows * N);
    const size_t common = std::min(first.size(), (size_t)rows * N);
    check(same_bits(first.data(), y.h.data(), common), "gemm_%s: rows differ bitwise between bucket %d and %d", KIT_GEMM_NAME[role],
          KIT_BUCKETS[0], KIT_BUCKETS[bk]);
  }
  // A row alone (smallest bucket, rows = 1) == the same row in the largest batch.
  y.poison();
  MD_CALL(KIT_GEMM[role][last](x.d, w.buf.d, b, y.d, R, nullptr));
  y.down();
  for (int r : {0, R / 2, R - 1}) {
    y1.poison();
    MD_CALL(KIT_GEMM[role][0](x.d + (size_t)r * K, w.buf.d, b, y1.d, 1, nullptr));
    y1.down();
    check(same_bits(y1.h.data(), &y.h[(size_t)r * N], N), "gemm_%s: row %d alone differs bitwise from the row in a batch of %d",
          KIT_GEMM_NAME[role], r, R);
  }
  check(KIT_GEMM[role][0](x.d, w.buf.d, b, y.d, max_rows(0) + 1, nullptr) == MD_ERR_ARG, "gemm_%s: too many rows not rejected",
        KIT_GEMM_NAME[role]);
}

// ------------------------------------------------------------------------------------ LM head + argmax

/** Host argmax: lowest index wins ties, NaN never wins, a row of NaNs gives 0 (md_argmax's contract). */
static int host_argmax(const float* l, int n) {
  int best = -1;
  for (int i = 0; i < n; ++i)
    if (l[i] == l[i] && (best < 0 || l[i] > l[best])) best = i;
  return best < 0 ? 0 : best;
}

/**
 * md_lm_head_argmax_b<B>: logits bitwise equal to md_gemm_lm_head's, tokens equal to md_argmax on them and
 * to the host argmax, also with exact ties (duplicated weight rows), a NaN column and an all-NaN row; the
 * same bits in every bucket, for a row alone, and with logits NULL; logits close to float64.
 */
static void test_lm_head_argmax() {
  const int N = KIT_VOCAB, K = KIT_HIDDEN, last = KIT_NBUCKETS - 1, R = std::min(max_rows(last), g_short ? 8 : 64);
  group("lm_head_argmax", g_tol_gemm);
  Buf<float> x((size_t)R * K), logits((size_t)R * N), ref_logits((size_t)R * N), l1(N);
  Buf<int32_t> tok(R), ref_tok(R), t1(1);
  fill(x, 1.0f);
  for (int k = 0; k < K; ++k) x.h[(size_t)(R - 1) * K + k] = NAN;  // the last row: every logit NaN, token 0
  x.up();
  Weights w((size_t)N * K, 0.5f);
  for (int c = 0; c < 8; ++c) {  // copies at higher indices: ties of bit-identical logits
    const int from = rand_int(0, N - 1), to = rand_int(from, N - 1);
    for (int k = 0; k < K; ++k) w.buf.h[(size_t)to * K + k] = w.buf.h[(size_t)from * K + k], w.f[(size_t)to * K + k] = w.f[(size_t)from * K + k];
  }
  const int nan_col = rand_int(0, N - 1);
  w.buf.h[(size_t)nan_col * K + rand_int(0, K - 1)] = narrow(NAN);
  w.buf.up();
  const md_gemm_fn* gemm = KIT_GEMM_LM_HEAD;

  std::vector<float> first_logits;
  std::vector<int32_t> first_tokens;
  for (int bk = 0; bk < KIT_NBUCKETS; ++bk) {
    if (g_short && bk != 0 && bk != last) continue;
    const int rows = std::min(R, max_rows(bk));
    logits.poison();
    tok.poison();
    MD_CALL(KIT_LM_HEAD_ARGMAX[bk](x.d, w.buf.d, logits.d, tok.d, rows, nullptr));
    ref_logits.poison();
    ref_tok.poison();
    MD_CALL(gemm[bk](x.d, w.buf.d, nullptr, ref_logits.d, rows, nullptr));
    MD_CALL(md_argmax(ref_logits.d, ref_tok.d, rows, nullptr));
    logits.down();
    tok.down();
    ref_logits.down();
    ref_tok.down();
    check(same_bits(logits.h.data(), ref_logits.h.data(), (size_t)rows * N), "lm_head_argmax b%d: logits differ bitwise from gemm_lm_head",
          KIT_BUCKETS[bk]);
    for (int r = 0; r < rows; ++r) {
      const int want = host_argmax(&logits.h[(size_t)r * N], N);
      check(tok.h[r] == ref_tok.h[r] && tok.h[r] == want, "lm_head_argmax b%d row %d: token %d, md_argmax %d, host %d", KIT_BUCKETS[bk], r,
            tok.h[r], ref_tok.h[r], want);
    }
    if (bk == 0) {
      first_logits.assign(logits.h.begin(), logits.h.begin() + (size_t)rows * N);
      first_tokens.assign(tok.h.begin(), tok.h.begin() + rows);
    }
    check(same_bits(first_logits.data(), logits.h.data(), std::min(first_logits.size(), (size_t)rows * N)) &&
              std::equal(first_tokens.begin(), first_tokens.begin() + std::min((int)first_tokens.size(), rows), tok.h.begin()),
          "lm_head_argmax: rows differ between bucket %d and %d", KIT_BUCKETS[0], KIT_BUCKETS[bk]);
    // logits NULL: only tokens, the same ones.
    std::vector<int32_t> with_logits(tok.h.begin(), tok.h.begin() + rows);
    tok.poison();
    MD_CALL(KIT_LM_HEAD_ARGMAX[bk](x.d, w.buf.d, nullptr, tok.d, rows, nullptr));
    tok.down();
    check(std::equal(with_logits.begin(), with_logits.end(), tok.h.begin()), "lm_head_argmax b%d: tokens differ with logits NULL", KIT_BUCKETS[bk]);
  }
  // float64 reference over the finite columns of the finite rows (the largest call's logits are in `logits`).
  std::vector<int> cols;
  for (int n : ref_cols(R - 1, N, K))
    if (n != nan_col) cols.push_back(n);
  parallel_for(R - 1, [&](int r) {
    std::vector<double> ref(cols.size());
    for (size_t c = 0; c < cols.size(); ++c) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += (double)x.h[(size_t)r * K + k] * w.f[(size_t)cols[c] * K + k];
      ref[c] = s;
    }
    const double e = rel_err_cols(&logits.h[(size_t)r * N], ref.data(), cols);
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    note_err(e);
    check(e <= g_tol_gemm, "lm_head_argmax row %d: relative error %g > %g", r, e, g_tol_gemm);
  });
  // A row alone in the smallest bucket == the row in the largest call.
  for (int r : {0, R / 2, R - 1}) {
    l1.poison();
    t1.poison();
    MD_CALL(KIT_LM_HEAD_ARGMAX[0](x.d + (size_t)r * K, w.buf.d, l1.d, t1.d, 1, nullptr));
    l1.down();
    t1.down();
    check(same_bits(l1.h.data(), &logits.h[(size_t)r * N], N) && t1.h[0] == tok.h[r], "lm_head_argmax: row %d alone differs from the batch", r);
  }
  check(KIT_LM_HEAD_ARGMAX[0](x.d, w.buf.d, nullptr, tok.d, max_rows(0) + 1, nullptr) == MD_ERR_ARG, "lm_head_argmax: too many rows not rejected");
  check(KIT_LM_HEAD_ARGMAX[0](x.d, w.buf.d, logits.d, nullptr, 1, nullptr) == MD_ERR_ARG, "lm_head_argmax: NULL tokens not rejected");
}

// ------------------------------------------------------------------------------------- row-wise kernels

static void test_norms() {
  const int R = 37, H = KIT_HIDDEN;
  group("rmsnorm / add_rmsnorm / add / swiglu", g_tol_act);
  Buf<float> x((size_t)R * H), d((size_t)R * H), y((size_t)R * H), y1(H), resid((size_t)R * H);
  fill(x, 2.0f);
  fill(d, 2.0f);
  Weights w(H, 1.5f);
  std::vector<double> ref((size_t)R * H), ref2((size_t)R * H), sum((size_t)R * H);
  for (int r = 0; r < R; ++r) {
    double ss = 0, ss2 = 0;
    for (int i = 0; i < H; ++i) {
      const size_t j = (size_t)r * H + i;
      sum[j] = (double)x.h[j] + d.h[j];
      ss += (double)x.h[j] * x.h[j];
      ss2 += sum[j] * sum[j];
    }
    for (int i = 0; i < H; ++i) {
      const size_t j = (size_t)r * H + i;
      ref[j] = x.h[j] / std::sqrt(ss / H + KIT_EPS) * w.f[i];
      ref2[j] = sum[j] / std::sqrt(ss2 / H + KIT_EPS) * w.f[i];
    }
  }
  y.poison();
  MD_CALL(md_rmsnorm(x.d, w.buf.d, y.d, R, nullptr));
  y.down();
  for (int r = 0; r < R; ++r) {
    const double e = rel_err(&y.h[(size_t)r * H], &ref[(size_t)r * H], H);
    note_err(e);
    check(e <= g_tol_act, "rmsnorm row %d: relative error %g", r, e);
  }
  for (int r : {0, R - 1}) {
    y1.poison();
    MD_CALL(md_rmsnorm(x.d + (size_t)r * H, w.buf.d, y1.d, 1, nullptr));
    y1.down();
    check(same_bits(y1.h.data(), &y.h[(size_t)r * H], H), "rmsnorm: row %d alone differs bitwise from the batch", r);
  }
  resid.h = x.h;
  resid.up();
  y.poison();
  MD_CALL(md_add_rmsnorm(resid.d, d.d, w.buf.d, y.d, R, nullptr));
  y.down();
  resid.down();
  for (int r = 0; r < R; ++r) {
    const double e = rel_err(&y.h[(size_t)r * H], &ref2[(size_t)r * H], H);
    note_err(e);
    check(e <= g_tol_act, "add_rmsnorm row %d: relative error %g", r, e);
    bool exact = true;
    for (int i = 0; i < H; ++i) exact &= resid.h[(size_t)r * H + i] == x.h[(size_t)r * H + i] + d.h[(size_t)r * H + i];
    check(exact, "add_rmsnorm row %d: resid is not resid + delta", r);
  }
  // md_add is one rounding per element: exact against the host.
  resid.h = x.h;
  resid.up();
  MD_CALL(md_add(resid.d, d.d, R, nullptr));
  resid.down();
  bool exact = true;
  for (size_t j = 0; j < resid.size(); ++j) exact &= resid.h[j] == x.h[j] + d.h[j];
  check(exact, "add: resid != resid + delta");

  const int I = KIT_INTER;
  Buf<float> g((size_t)R * I), u((size_t)R * I), o((size_t)R * I);
  fill(g, 6.0f);
  fill(u, 2.0f);
  o.poison();
  MD_CALL(md_swiglu(g.d, u.d, o.d, R, nullptr));
  o.down();
  std::vector<double> sref((size_t)R * I);
  for (size_t j = 0; j < sref.size(); ++j) sref[j] = g.h[j] / (1.0 + std::exp(-(double)g.h[j])) * u.h[j];
  for (int r = 0; r < R; ++r) {
    const double e = rel_err(&o.h[(size_t)r * I], &sref[(size_t)r * I], I);
    note_err(e);
    check(e <= g_tol_act, "swiglu row %d: relative error %g", r, e);
  }
}

static void test_embed_argmax_verify() {
  const int R = 29, H = KIT_HIDDEN, V = KIT_VOCAB;
  group("embed / argmax / verify_greedy");
  Weights table((size_t)V * H, 1.0f);
  Buf<int32_t> tok(R);
  Buf<float> x((size_t)R * H);
  for (auto& t : tok.h) t = rand_int(0, V - 1);
  tok.up();
  x.poison();
  MD_CALL(md_embed(table.buf.d, tok.d, x.d, R, nullptr));
  x.down();
  bool exact = true;
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < H; ++i) exact &= x.h[(size_t)r * H + i] == table.f[(size_t)tok.h[r] * H + i];
  check(exact, "embed: rows are not the table rows");
  tok.h[R / 2] = V;
  tok.up();
  // CUDA never waits for the host: a token out of range is a zero row, not an error (codegen/abi.ts).
  x.poison();
  check(md_embed(table.buf.d, tok.d, x.d, R, nullptr) == MD_OK, "embed: token %d (= vocab) is not MD_OK", V);
  x.down();
  bool zero = true;
  for (int i = 0; i < H; ++i) zero &= x.h[(size_t)(R / 2) * H + i] == 0.0f && x.h[(size_t)(R / 2 - 1) * H + i] == table.f[(size_t)tok.h[R / 2 - 1] * H + i];
  check(zero, "embed: the row of token %d (= vocab) is not zeros, or its neighbour changed", V);

  Buf<float> logits((size_t)R * V);
  Buf<int32_t> am(R);
  fill(logits, 4.0f);
  for (int r = 0; r < R; ++r) {
    float* l = &logits.h[(size_t)r * V];
    if (r % 3 == 0) l[rand_int(0, V - 1)] = NAN;
    if (r % 4 == 1) l[rand_int(0, V - 1)] = 9.0f, l[rand_int(0, V - 1)] = 9.0f;  // ties: lowest index wins
  }
  logits.up();
  am.poison();
  MD_CALL(md_argmax(logits.d, am.d, R, nullptr));
  am.down();
  for (int r = 0; r < R; ++r) {
    const float* l = &logits.h[(size_t)r * V];
    int best = -1;
    for (int i = 0; i < V; ++i)
      if (l[i] == l[i] && (best < 0 || l[i] > l[best])) best = i;
    check(am.h[r] == best, "argmax row %d: got %d, want %d", r, am.h[r], best);
  }

  const int B = 9, G = KIT_GAMMA;
  Buf<int32_t> tt((size_t)B * (G + 1)), dt((size_t)B * G), acc(B), nxt(B);
  for (auto& t : tt.h) t = rand_int(0, 3);
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < G; ++j) dt.h[(size_t)b * G + j] = rand_int(0, 4) == 0 ? 7 : tt.h[(size_t)b * (G + 1) + j];
  tt.up();
  dt.up();
  acc.poison();
  nxt.poison();
  MD_CALL(md_verify_greedy(tt.d, dt.d, acc.d, nxt.d, B, nullptr));
  acc.down();
  nxt.down();
  for (int b = 0; b < B; ++b) {
    int a = 0;
    while (a < G && dt.h[(size_t)b * G + a] == tt.h[(size_t)b * (G + 1) + a]) ++a;
    check(acc.h[b] == a && nxt.h[b] == tt.h[(size_t)b * (G + 1) + a], "verify_greedy seq %d: got (%d, %d), want (%d, %d)", b,
          acc.h[b], nxt.h[b], a, tt.h[(size_t)b * (G + 1) + a]);
  }
}

// ----------------------------------------------------------------------------------------------- Philox

__global__ void kit_philox_kernel(const md_philox4* ctr, const uint32_t* key, md_philox4* out, const uint32_t* x, uint32_t* u,
                                  double* g, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = md_philox4x32_10(ctr[i], key[2 * i], key[2 * i + 1]);
  u[2 * i] = md_f32_bits(md_uniform01(x[i]));
  u[2 * i + 1] = md_f32_bits(md_uniform_open01(x[i]));
  g[i] = md_gumbel(x[i]);
}

static void test_philox() {
  // Random123's kat_vectors for Philox4x32-10, then random counters and keys.
  static const uint32_t kat[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
  };
  const int n = g_short ? 256 : 4096;
  group("philox / uniforms / gumbel (device vs host bits)");
  Buf<md_philox4> ctr(n), out(n);
  Buf<uint32_t> key(2 * n), x(n), u(2 * n);
  Buf<double> g(n);
  for (int i = 0; i < n; ++i) {
    for (int w = 0; w < 4; ++w) ctr.h[i].v[w] = i < 3 ? kat[i][w] : (uint32_t)g_rng();
    key.h[2 * i] = i < 3 ? kat[i][4] : (uint32_t)g_rng();
    key.h[2 * i + 1] = i < 3 ? kat[i][5] : (uint32_t)g_rng();
    x.h[i] = i == 0 ? 0u : i == 1 ? 0xffffffffu : (uint32_t)g_rng();
  }
  ctr.up();
  key.up();
  x.up();
  MD_LAUNCH((n + 127) / 128, 128, 0, nullptr, kit_philox_kernel)(ctr.d, key.d, out.d, x.d, u.d, g.d, n);
  CUDA_OK(cudaDeviceSynchronize());
  out.down();
  u.down();
  g.down();
  for (int i = 0; i < 3; ++i)
    check(std::memcmp(out.h[i].v, &kat[i][6], 16) == 0, "philox known answer %d: got %08x %08x %08x %08x", i, out.h[i].v[0], out.h[i].v[1],
          out.h[i].v[2], out.h[i].v[3]);
  int words = 0, uniforms = 0, gumbels = 0;
  for (int i = 0; i < n; ++i) {
    const md_philox4 want = md_philox4x32_10(ctr.h[i], key.h[2 * i], key.h[2 * i + 1]);
    words += std::memcmp(want.v, out.h[i].v, 16) != 0;
    uniforms += u.h[2 * i] != md_f32_bits(md_uniform01(x.h[i])) || u.h[2 * i + 1] != md_f32_bits(md_uniform_open01(x.h[i]));
    const double gw = md_gumbel(x.h[i]);
    gumbels += std::memcmp(&gw, &g.h[i], sizeof gw) != 0;
  }
  check(words == 0, "philox: %d of %d device blocks differ from the host's", words, n);
  check(uniforms == 0, "uniform conversions: %d of %d differ from the host's", uniforms, n);
  check(gumbels == 0, "gumbel: %d of %d differ from the host's bits", gumbels, n);
}

// ----------------------------------------------------------------------------------- KV cache and rope

/** A paged cache of `slots` sequences with a shuffled page table. */
struct Cache {
  int slots, pps = KIT_PAGES_PER_SEQ, pages;
  Buf<int32_t> table;
  Weights k, v;
  static size_t elems(int slots) { return (size_t)slots * KIT_PAGES_PER_SEQ * KIT_PAGE * KIT_KV_HEADS * KIT_HEAD_DIM; }
  explicit Cache(int s) : slots(s), pages(s * KIT_PAGES_PER_SEQ), table((size_t)s * KIT_PAGES_PER_SEQ), k(elems(s), 1.0f), v(elems(s), 1.0f) {
    for (int i = 0; i < pages; ++i) table.h[i] = i;
    std::shuffle(table.h.begin(), table.h.end(), g_rng);
    table.up();
  }
  size_t at(int slot, int pos, int kvh) const {
    const size_t page = table.h[(size_t)slot * pps + pos / KIT_PAGE];
    return ((page * KIT_KV_HEADS + kvh) * KIT_PAGE + pos % KIT_PAGE) * KIT_HEAD_DIM;  // pages are [kv head][offset][dim]
  }
};

static void test_rope_append() {
  const int R = 11, H = KIT_HEADS, KH = KIT_KV_HEADS, D = KIT_HEAD_DIM, HALF = D / 2;
  group("rope_append", g_tol_act);
  Cache cache(3);
  Buf<float> q((size_t)R * H * D), k((size_t)R * KH * D), v((size_t)R * KH * D);
  Buf<int32_t> seq(R), pos(R);
  fill(q, 1.0f);
  fill(k, 1.0f);
  fill(v, 1.0f);
  const std::vector<float> q0 = q.h, k0 = k.h;
  // Distinct (slot, pos) pairs; row 0 writes the last position of the cache.
  for (int r = 0; r < R; ++r) seq.h[r] = r % 3, pos.h[r] = r == 0 ? KIT_MAX_SEQ - 1 : (r / 3 * 131 + 5) % (KIT_MAX_SEQ - 1);
  seq.up();
  pos.up();
  MD_CALL(md_rope_append(q.d, k.d, v.d, cache.k.buf.d, cache.v.buf.d, cache.table.d, cache.pps, seq.d, pos.d, R, nullptr));
  q.down();
  k.down();
  cache.k.buf.down();
  cache.v.buf.down();
  for (int r = 0; r < R; ++r) {
    std::vector<double> rq((size_t)H * D), rk((size_t)KH * D);
    for (int i = 0; i < HALF; ++i) {
      const double a = (double)pos.h[r] * kit_inv_freq[i], c = std::cos(a), s = std::sin(a);
      for (int h = 0; h < H + KH; ++h) {
        const float* x = h < H ? &q0[((size_t)r * H + h) * D] : &k0[((size_t)r * KH + h - H) * D];
        double* o = h < H ? &rq[(size_t)h * D] : &rk[(size_t)(h - H) * D];
        o[i] = x[i] * c - x[i + HALF] * s;
        o[i + HALF] = x[i + HALF] * c + x[i] * s;
      }
    }
    const double eq = rel_err(&q.h[(size_t)r * H * D], rq.data(), (size_t)H * D), ek = rel_err(&k.h[(size_t)r * KH * D], rk.data(), (size_t)KH * D);
    note_err(eq);
    note_err(ek);
    check(eq <= g_tol_act, "rope_append row %d: q rotation error %g", r, eq);
    check(ek <= g_tol_act, "rope_append row %d: k rotation error %g", r, ek);
    bool stored = true;
    for (int h = 0; h < KH; ++h)
      for (int d = 0; d < D; ++d) {
        const size_t c = cache.at(seq.h[r], pos.h[r], h) + d;
        stored &= widen(cache.k.buf.h[c]) == widen(narrow(k.h[((size_t)r * KH + h) * D + d]));
        stored &= widen(cache.v.buf.h[c]) == widen(narrow(v.h[((size_t)r * KH + h) * D + d]));
      }
    check(stored, "rope_append row %d: cache at (slot %d, pos %d) does not hold the rotated k / v", r, seq.h[r], pos.h[r]);
  }
}

// ------------------------------------------------------------------------------------------- attention

struct Pass {
  const char* name;
  const md_attn_fn* fns;
  const float* params;
  int nparams;
  bool (*visible)(int32_t, int32_t, const float*);
  float (*score)(float, int32_t, int32_t, int32_t, const float*);
};

/** x as the tensor-core attention takes q and the softmax weights: rounded to the storage type. */
static double attn_operand(double x) { return KIT_ATTN_MMA ? (double)widen(narrow((float)x)) : x; }

/**
 * One row's attention in float64, and per output how far from it the kernel may also be (slack). With the
 * tensor-core kernel (KIT_ATTN_MMA) q and P are rounded as it rounds them (test/reference/kernels.ts,
 * 'cuda-mma'): each weight exp(s - m), m the running maximum of the row's visible scores in its chunk up to
 * its page, is rounded before it multiplies V, l sums the unrounded weights, and a weight within the
 * kernel's f32 error of a rounding boundary may round either way, which the slack covers.
 */
static void attn_reference(const Pass& p, const Cache& c, const std::vector<int>& lens, const std::vector<float>& q, int slot, int qpos,
                           int row, double* out, double* slack) {
  const int H = KIT_HEADS, D = KIT_HEAD_DIM, G = KIT_HEADS / KIT_KV_HEADS;
  for (int h = 0; h < H; ++h) {
    std::vector<double> s;
    std::vector<int> ts;
    double size = 0;  // the largest |score| and scaled sum of |q_d k_d|: what the kernel's f32 score error scales with
    for (int t = 0; t < lens[slot]; ++t) {
      if (!p.visible(qpos, t, p.params)) continue;
      double dot = 0, abs = 0;
      const size_t kb = c.at(slot, t, h / G);
      for (int d = 0; d < D; ++d) {
        const double x = attn_operand(q[((size_t)row * H + h) * D + d]) * c.k.f[kb + d];
        dot += x;
        abs += std::fabs(x);
      }
      s.push_back(p.score((float)(dot * KIT_SCALE), qpos, t, h, p.params));
      ts.push_back(t);
      size = std::max({size, abs * KIT_SCALE, std::fabs(s.back())});
    }
    double* o = out + (size_t)h * D;
    double* sl = slack + (size_t)h * D;
    std::fill(o, o + D, 0.0);
    std::fill(sl, sl + D, 0.0);
    if (s.empty()) continue;
    const double eps = std::ldexp(2 + 4 * size, -19);
    struct State {
      double m = -INFINITY, l = 0;
      std::vector<double> acc, slk;
    };
    std::map<int, State> chunks;
    for (size_t i = 0; i < s.size();) {
      size_t j = i;
      while (j < s.size() && ts[j] / KIT_PAGE == ts[i] / KIT_PAGE) ++j;
      State& st = chunks[ts[i] / KIT_CHUNK];
      if (st.acc.empty()) st.acc.assign(D, 0.0), st.slk.assign(D, 0.0);
      const double top = *std::max_element(s.begin() + i, s.begin() + j);
      if (top != -INFINITY) {
        const double m = std::max(st.m, top), corr = st.m == -INFINITY ? 0 : std::exp(st.m - m);
        st.l *= corr;
        for (int d = 0; d < D; ++d) st.acc[d] *= corr, st.slk[d] *= corr;
        for (size_t k = i; k < j; ++k) {
          const double w = std::exp(s[k] - m);
          st.l += w;
          const double wr = attn_operand(w), spread = KIT_ATTN_MMA ? attn_operand(w * (1 + eps)) - attn_operand(w * (1 - eps)) : 0;
          const size_t vb = c.at(slot, ts[k], h / G);
          for (int d = 0; d < D; ++d) st.acc[d] += wr * c.v.f[vb + d], st.slk[d] += spread * std::fabs(c.v.f[vb + d]);
        }
        st.m = m;
      }
      i = j;
    }
    double top = -INFINITY, l = 0;
    for (auto& [k, st] : chunks)
      if (st.l > 0) top = std::max(top, st.m);
    for (auto& [k, st] : chunks)
      if (st.l > 0) l += st.l * std::exp(st.m - top);
    for (auto& [k, st] : chunks) {
      if (!(st.l > 0)) continue;
      const double f = std::exp(st.m - top) / l;
      for (int d = 0; d < D; ++d) o[d] += st.acc[d] * f, sl[d] += st.slk[d] * f;
    }
  }
}

static void test_attention(const Pass& p) {
  const int H = KIT_HEADS, D = KIT_HEAD_DIM, G1 = KIT_GAMMA + 1, S = 3;
  const int last = KIT_NBUCKETS - 1;
  char gname[64];
  std::snprintf(gname, sizeof gname, "attn_%s", p.name);
  group(gname, g_tol);
  Cache cache(S);
  std::vector<int> lens(S);
  const int max_len = g_short ? std::min((int)KIT_MAX_SEQ, 1024) : (int)KIT_MAX_SEQ;
  lens[0] = max_len;                          // every chunk
  lens[1] = std::max(G1, max_len / 2 + 7);    // a partial last page
  lens[2] = rand_int(G1, std::max(G1, max_len / 5));
  Buf<int32_t> seq_len(S);
  for (int s = 0; s < S; ++s) seq_len.h[s] = lens[s];
  seq_len.up();
  // Rows: each slot's last gamma+1 positions (a verification group), then random earlier positions.
  std::vector<int32_t> rs, rp;
  for (int s = 0; s < S; ++s)
    for (int j = 0; j < G1; ++j) rs.push_back(s), rp.push_back(lens[s] - G1 + j);
  while ((int)rs.size() < std::min(max_rows(last), g_short ? 3 * G1 + 2 : 256)) {
    const int s = rand_int(0, S - 1);
    rs.push_back(s), rp.push_back(rand_int(0, lens[s] - 1));
  }
  const int R = (int)rs.size();
  Buf<int32_t> seqs(R), poss(R);
  seqs.h = rs, poss.h = rp;
  seqs.up();
  poss.up();
  Buf<float> q((size_t)R * H * D), out((size_t)R * H * D), out1((size_t)R * H * D), ws(md_attn_workspace_floats(max_rows(last)));
  Buf<float> params(std::max(p.nparams, 1));
  std::copy(p.params, p.params + p.nparams, params.h.begin());
  params.up();
  fill(q, 1.5f);
  auto args = [&](int first, int rows, float* o) {
    md_attn_args a;
    a.q = q.d + (size_t)first * H * D;
    a.k_cache = cache.k.buf.d;
    a.v_cache = cache.v.buf.d;
    a.page_table = cache.table.d;
    a.pages_per_seq = cache.pps;
    a.row_seq = seqs.d + first;
    a.row_pos = poss.d + first;
    a.seq_len = seq_len.d;
    a.rows = rows;
    a.params = params.d;
    a.out = o;
    a.workspace = ws.d;
    a.stream = nullptr;
    return a;
  };
  const int RD = H * D;
  const int bk_all = bucket_for(R);
  if (bk_all < 0) {
    check(false, "attn_%s: %d rows fit no bucket", p.name, R);
    return;
  }
  out.poison();
  ws.poison();
  md_attn_args all = args(0, R, out.d);
  MD_CALL(p.fns[bk_all](&all));
  out.down();
  bool written = true;
  for (float v : out.h) written &= v == v;
  check(written, "attn_%s: NaN in the output of %d rows (an element left unwritten?)", p.name, R);
  // float64 references: the verification groups, then rows in order while under ~2^33 multiply-adds.
  std::vector<int> ref_rows;
  double cost = 0;
  for (int r = 0; r < R; ++r) {
    cost += (double)lens[rs[r]] * RD * 2;
    if (r < S * G1 || cost <= 8.6e9) ref_rows.push_back(r);
  }
  std::vector<double> errs(ref_rows.size());
  parallel_for((int)ref_rows.size(), [&](int i) {
    std::vector<double> ref(RD), slack(RD);
    const int r = ref_rows[i];
    attn_reference(p, cache, lens, q.h, rs[r], rp[r], r, ref.data(), slack.data());
    errs[i] = rel_err(&out.h[(size_t)r * RD], ref.data(), RD, 1e-3, slack.data());
  });
  for (size_t i = 0; i < ref_rows.size(); ++i) {
    const int r = ref_rows[i];
    note_err(errs[i]);
    check(errs[i] <= g_tol, "attn_%s row %d (slot %d, pos %d, len %d): relative error %g > %g", p.name, r, rs[r], rp[r], lens[rs[r]], errs[i],
          g_tol);
  }
  // Each row alone, in the smallest bucket.
  for (int r = 0; r < R; r += std::max(1, R / 7)) {
    out1.poison();
    ws.poison();
    md_attn_args one = args(r, 1, out1.d);
    MD_CALL(p.fns[0](&one));
    out1.down();
    check(same_bits(out1.h.data(), &out.h[(size_t)r * RD], RD), "attn_%s row %d: alone differs bitwise from the batch of %d", p.name, r, R);
  }
  // Each slot's last g+1 rows (a verification group at gamma g, for every g up to the module's) as their own call.
  for (int s = 0; s < S; ++s)
    for (int g = 1; g <= KIT_GAMMA; ++g) {
      out1.poison();
      ws.poison();
      const int first = s * G1 + (G1 - (g + 1));
      md_attn_args grp = args(first, g + 1, out1.d);
      MD_CALL(p.fns[bucket_for(g + 1)](&grp));
      out1.down();
      check(same_bits(out1.h.data(), &out.h[(size_t)first * RD], (size_t)(g + 1) * RD),
            "attn_%s slot %d: %d verify rows (gamma %d) differ bitwise from the batch", p.name, s, g + 1, g);
    }
  // The whole batch through every other bucket that holds it.
  for (int bk = bk_all + 1; bk < KIT_NBUCKETS; ++bk) {
    out1.poison();
    ws.poison();
    md_attn_args other = args(0, R, out1.d);
    MD_CALL(p.fns[bk](&other));
    out1.down();
    check(same_bits(out1.h.data(), out.h.data(), (size_t)R * RD), "attn_%s: bucket %d differs bitwise from bucket %d", p.name, KIT_BUCKETS[bk],
          KIT_BUCKETS[bk_all]);
  }
}

// -------------------------------------------------------------------------------------------- sampling

/** A logits row with the hard cases built in: flat and peaked scales, exact ties, NaN, -inf, +inf, all NaN. */
static void logits_row(float* l, int V) {
  static const float scales[] = {0.1f, 1, 4, 12, 1, 3};
  const int shape = rand_int(0, 5);
  Fast r;
  for (int i = 0; i < V; ++i) l[i] = r(scales[shape]);
  if (shape == 4) std::fill(l, l + V, 0.5f);
  if (shape == 5)
    for (int c = 0; c < 8; ++c) l[rand_int(0, V - 1)] = l[rand_int(0, V - 1)];
  if (rand_int(0, 9) < 3)
    for (int c = 0; c < 5; ++c) l[rand_int(0, V - 1)] = NAN;
  if (rand_int(0, 9) < 3)
    for (int c = 0; c < 20; ++c) l[rand_int(0, V - 1)] = -INFINITY;
  if (rand_int(0, 19) == 0) l[rand_int(0, V - 1)] = INFINITY;
  if (rand_int(0, 29) == 0) std::fill(l, l + V, NAN);
}

/** Per-row (or per-sequence) sampling parameters, seeds and positions, on host and device. */
struct SampleParams {
  Buf<float> temperature, top_p, min_p;
  Buf<int32_t> top_k, row_pos;
  Buf<uint32_t> seed;
  explicit SampleParams(int n) : temperature(n), top_p(n), min_p(n), top_k(n), row_pos(n), seed(2 * (size_t)n) {
    static const float temps[] = {0.0f, 1e-6f, 0.3f, 0.7f, 1.0f, 1.5f, 2.0f};
    for (int i = 0; i < n; ++i) {
      temperature.h[i] = temps[rand_int(0, 6)];
      const int k = rand_int(0, 3);
      top_k.h[i] = k == 0 ? 0 : k == 1 ? 1 : k == 2 ? rand_int(2, 50) : KIT_VOCAB + 3;
      const int tp = rand_int(0, 3);
      top_p.h[i] = tp < 2 ? 1.0f : tp == 2 ? 0.9f : uniform(0.05f, 1.0f);
      const int mp = rand_int(0, 3);
      min_p.h[i] = mp < 2 ? 0.0f : mp == 2 ? 0.05f : uniform(0.0f, 0.3f);
      seed.h[2 * i] = (uint32_t)g_rng(), seed.h[2 * i + 1] = (uint32_t)g_rng();
      row_pos.h[i] = rand_int(0, KIT_MAX_SEQ - 1);
    }
    up();
  }
  void up() { temperature.up(), top_p.up(), min_p.up(), top_k.up(), row_pos.up(), seed.up(); }
};

/** md_sample: every row's token equals the CPU kernel's (model/sampling.ts's), a row alone equals the batch, and a
 *  row with invalid parameters gets -1 without touching the others. */
static void test_sample() {
  const int V = KIT_VOCAB, R = g_short ? 8 : 64;
  group("sample (vs the CPU kernel)");
  Buf<float> logits((size_t)R * V);
  for (int r = 0; r < R; ++r) logits_row(&logits.h[(size_t)r * V], V);
  logits.up();
  SampleParams sp(R);
  Buf<int32_t> tok(R), one(1);
  std::vector<int32_t> want(R);
  check(ref_md_sample(logits.h.data(), sp.temperature.h.data(), sp.top_k.h.data(), sp.top_p.h.data(), sp.min_p.h.data(), sp.seed.h.data(),
                      sp.row_pos.h.data(), want.data(), R, nullptr) == MD_OK,
        "sample: the CPU reference refused the inputs");
  tok.poison();
  MD_CALL(md_sample(logits.d, sp.temperature.d, sp.top_k.d, sp.top_p.d, sp.min_p.d, sp.seed.d, sp.row_pos.d, tok.d, R, nullptr));
  tok.down();
  for (int r = 0; r < R; ++r)
    check(tok.h[r] == want[r], "sample row %d (T %g, top_k %d, top_p %g, min_p %g): token %d, CPU kernel %d", r, sp.temperature.h[r], sp.top_k.h[r],
          sp.top_p.h[r], sp.min_p.h[r], tok.h[r], want[r]);
  for (int r : {0, R / 2, R - 1}) {
    one.poison();
    MD_CALL(md_sample(logits.d + (size_t)r * V, sp.temperature.d + r, sp.top_k.d + r, sp.top_p.d + r, sp.min_p.d + r, sp.seed.d + 2 * r,
                      sp.row_pos.d + r, one.d, 1, nullptr));
    one.down();
    check(one.h[0] == tok.h[r], "sample row %d: alone %d, in the batch %d", r, one.h[0], tok.h[r]);
  }
  // Row 1 gets a negative temperature: token -1 there, the other rows' tokens unchanged.
  sp.temperature.h[1] = -1.0f;
  sp.temperature.up();
  tok.poison();
  MD_CALL(md_sample(logits.d, sp.temperature.d, sp.top_k.d, sp.top_p.d, sp.min_p.d, sp.seed.d, sp.row_pos.d, tok.d, R, nullptr));
  tok.down();
  bool others = true;
  for (int r = 0; r < R; ++r) others &= r == 1 || tok.h[r] == want[r];
  check(tok.h[1] == -1 && others, "sample: an invalid row gave token %d (want -1), or changed another row", tok.h[1]);
}

/** md_verify_sample at gamma g: accepted and next equal the CPU kernel's for drafts sampled from draft logits
 *  near (identical, close, far from) the target's, and a sequence alone equals the batch. */
static void test_verify_sample(int g) {
  const int V = KIT_VOCAB, B = g_short ? 3 : 12;
  char name[64];
  std::snprintf(name, sizeof name, "verify_sample gamma %d (vs the CPU kernel)", g);
  group(name);
  Buf<float> tl((size_t)B * (g + 1) * V), dl((size_t)B * g * V);
  SampleParams sp(B);
  Buf<int32_t> dt((size_t)B * g), acc(B), nxt(B), acc1(1), nxt1(1);
  Fast rn;
  for (int b = 0; b < B; ++b) {
    const float noise = b % 3 == 0 ? 0.0f : b % 3 == 1 ? 0.3f : 3.0f;
    for (int j = 0; j <= g; ++j) logits_row(&tl.h[((size_t)b * (g + 1) + j) * V], V);
    for (int j = 0; j < g; ++j)
      for (int i = 0; i < V; ++i) dl.h[((size_t)b * g + j) * V + i] = tl.h[((size_t)b * (g + 1) + j) * V + i] + rn(noise);
    // The drafted tokens are the draft rows' samples (as the engine draws them), from the CPU kernel.
    for (int j = 0; j < g; ++j) {
      const int32_t pos = sp.row_pos.h[b] + j;
      check(ref_md_sample(&dl.h[((size_t)b * g + j) * V], &sp.temperature.h[b], &sp.top_k.h[b], &sp.top_p.h[b], &sp.min_p.h[b], &sp.seed.h[2 * b],
                          &pos, &dt.h[(size_t)b * g + j], 1, nullptr) == MD_OK,
            "verify_sample: the CPU reference refused a draft row");
      if (dt.h[(size_t)b * g + j] < 0 || dt.h[(size_t)b * g + j] >= V) dt.h[(size_t)b * g + j] = 0;
    }
  }
  tl.up(), dl.up(), dt.up();
  std::vector<int32_t> wa(B), wn(B);
  check(ref_md_verify_sample(tl.h.data(), dl.h.data(), dt.h.data(), sp.temperature.h.data(), sp.top_k.h.data(), sp.top_p.h.data(), sp.min_p.h.data(),
                             sp.seed.h.data(), sp.row_pos.h.data(), wa.data(), wn.data(), g, B, nullptr) == MD_OK,
        "verify_sample: the CPU reference refused the inputs");
  acc.poison(), nxt.poison();
  MD_CALL(md_verify_sample(tl.d, dl.d, dt.d, sp.temperature.d, sp.top_k.d, sp.top_p.d, sp.min_p.d, sp.seed.d, sp.row_pos.d, acc.d, nxt.d, g, B,
                           nullptr));
  acc.down(), nxt.down();
  for (int b = 0; b < B; ++b)
    check(acc.h[b] == wa[b] && nxt.h[b] == wn[b], "verify_sample gamma %d seq %d (T %g): (accepted %d, next %d), CPU kernel (%d, %d)", g, b,
          sp.temperature.h[b], acc.h[b], nxt.h[b], wa[b], wn[b]);
  for (int b : {0, B - 1}) {
    acc1.poison(), nxt1.poison();
    MD_CALL(md_verify_sample(tl.d + (size_t)b * (g + 1) * V, dl.d + (size_t)b * g * V, dt.d + (size_t)b * g, sp.temperature.d + b, sp.top_k.d + b,
                             sp.top_p.d + b, sp.min_p.d + b, sp.seed.d + 2 * b, sp.row_pos.d + b, acc1.d, nxt1.d, g, 1, nullptr));
    acc1.down(), nxt1.down();
    check(acc1.h[0] == acc.h[b] && nxt1.h[0] == nxt.h[b], "verify_sample gamma %d seq %d: alone differs from the batch", g, b);
  }
}

// ------------------------------------------------------------------------------------------------ main

static void write_json(const char* path, const char* device, uint64_t seed) {
  FILE* f = std::fopen(path, "w");
  if (!f) {
    std::printf("  FATAL cannot write %s\n", path);
    std::exit(2);
  }
  auto num = [](double x) {
    static char b[32];
    if (!(x == x)) return "null";
    std::snprintf(b, sizeof b, "%.6g", x);
    return (const char*)b;
  };
  auto str = [&](const std::string& t) {
    std::string o = "\"";
    for (char c : t) o += c == '"' || c == '\\' ? std::string("\\") + c : (unsigned char)c < 0x20 ? std::string(" ") : std::string(1, c);
    return o + "\"";
  };
  std::fprintf(f, "{\"module\": %s, \"device\": %s, \"seed\": %llu, \"short\": %s, \"checks\": %d, \"failed\": %d, \"groups\": [", str(KIT_NAME).c_str(),
               str(device).c_str(), (unsigned long long)seed, g_short ? "true" : "false", g_checks, g_failed);
  for (size_t i = 0; i < g_groups.size(); ++i) {
    const Group& g = g_groups[i];
    std::fprintf(f, "%s\n  {\"name\": %s, \"checks\": %d, \"failed\": %d, \"worst_rel_err\": %s, ", i ? "," : "", str(g.name).c_str(), g.checks, g.failed,
                 num(g.worst));
    std::fprintf(f, "\"tol\": %s}", g.tol > 0 ? num(g.tol) : "null");
  }
  std::fprintf(f, "],\n \"failures\": [");
  for (size_t i = 0; i < g_failures.size(); ++i) std::fprintf(f, "%s\n  %s", i ? "," : "", str(g_failures[i]).c_str());
  std::fprintf(f, "]}\n");
  std::fclose(f);
}

int main(int argc, char** argv) {
  uint64_t seed = ((uint64_t)std::random_device()() << 32) ^ std::random_device()();
  const char* json = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 0);
    else if (a == "--short") g_short = true;
    else if (a == "--json" && i + 1 < argc) json = argv[++i];
    else {
      std::printf("usage: %s [--seed N] [--short] [--json FILE] (unknown argument '%s')\n", argv[0], argv[i]);
      return 2;
    }
  }
  if (const char* t = std::getenv("MD_KIT_TOL")) g_tol = g_tol_gemm = g_tol_act = std::strtod(t, nullptr);
  g_rng.seed(seed);
  int dev = 0;
  cudaDeviceProp prop;
  CUDA_OK(cudaGetDevice(&dev));
  CUDA_OK(cudaGetDeviceProperties(&prop, dev));
  std::printf("%s on %s (sm_%d%d), seed %llu%s, tolerance %g / gemm %g / %g\n", KIT_NAME, prop.name, prop.major, prop.minor,
              (unsigned long long)seed, g_short ? ", short run" : "", g_tol, g_tol_gemm, g_tol_act);
  test_philox();
  for (int role = 0; role < 6; ++role) test_gemm(role);
  test_lm_head_argmax();
  test_norms();
  test_embed_argmax_verify();
  test_rope_append();
  test_attention({"target", KIT_ATTN_TARGET, kit_target_params, KIT_TARGET_NPARAMS, md_target_visible, md_target_score});
  test_attention({"draft", KIT_ATTN_DRAFT, kit_draft_params, KIT_DRAFT_NPARAMS, md_draft_visible, md_draft_score});
  test_sample();
  for (int g = g_short ? KIT_GAMMA : 1; g <= KIT_GAMMA; ++g) test_verify_sample(g);
  if (json) write_json(json, prop.name, seed);
  std::printf("%s: %d checks, %d failed\n", g_failed ? "FAIL" : "PASS", g_checks, g_failed);
  return g_failed ? 1 : 0;
}
