/* A C program on the magicdec C API (C99, no C++), built by runtime/CMakeLists.txt and driven by
 * test/runtime/capi.test.ts and engine.test.ts. Commands:
 *   capi_test errors <not-a-module.so>     error paths: NULLs, bad paths, a library that is not a module
 *   capi_test check <model_dir> <dtype>    md_model_check: prints "ok" or the error, exit 0 / 1
 *   capi_test generate <model_dir> <module.so> <ar|spec> <gamma|auto> <max_tokens> <tok>...
 *                                          one request; prints the tokens, then its stats as JSON, then
 *                                          the engine's gamma statistics as JSON
 *   capi_test isolate <model_dir> <module.so> <bad_tok> <max_tokens> <tok>...
 *                                          request A (the prompt) decodes; once it has tokens, request B
 *                                          (prompt bad_tok, which the module fails on) arrives; md_engine_run
 *                                          must finish A, fail B and return -1 naming B. Prints A's tokens
 *   capi_test cancel <model_dir> <module.so> <max_tokens> <tok>...
 *                                          requests A and B (the prompt) decode side by side; once B has
 *                                          tokens it is cancelled: the next step ends it (MD_FINISH_CANCELLED),
 *                                          A runs on, and at the end every KV page is free. Prints A's tokens
 *   capi_test sampling <model_dir> <module.so> <tok>...
 *                                          invalid sampling options are refused with their message and nothing
 *                                          queued; a seeded request (a seed past 2^53) replays, and reports its
 *                                          seed; an unseeded one gets a seed below 2^53 that replays it
 *   capi_test logits <model_dir> <module.so> <max_tokens> <tok>...
 *                                          speculative: on an engine without keep_logits, a request with
 *                                          md_request_options.keep_logits has the logits rows (bitwise) of
 *                                          one on a keep_logits engine; the request beside it without the
 *                                          flag has none (md_request_logits -1). Prints "ok"
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "magicdec.h"

static int failures = 0;

static void expect(int cond, const char* what) {
  if (!cond) {
    printf("FAIL %s (last error: %s)\n", what, md_last_error());
    ++failures;
  }
}

static void expect_error(const char* part, const char* what) {
  if (!strstr(md_last_error(), part)) {
    printf("FAIL %s: error \"%s\" lacks \"%s\"\n", what, md_last_error(), part);
    ++failures;
  }
}

static int errors(const char* not_a_module) {
  md_engine_options o;
  md_engine_options_default(&o);
  expect(o.mode == MD_MODE_SPEC && o.max_batch == 0, "default options");

  expect(md_engine_create(NULL, "x.so", &o) == NULL, "create with NULL model dir fails");
  expect_error("model_dir is NULL", "NULL model dir");
  expect(md_engine_create("/nonexistent", "/nonexistent/m.so", NULL) == NULL, "create with a missing module fails");
  expect_error("/nonexistent/m.so: cannot load module", "missing module");
  expect(md_engine_create("/nonexistent", not_a_module, NULL) == NULL, "create with a non-module library fails");
  expect_error("does not export 'md_module_manifest'", "non-module library");
  o.mode = 7;
  expect(md_engine_create("/nonexistent", not_a_module, &o) == NULL, "bad mode fails");
  expect_error("option mode: 7", "bad mode");

  int32_t tok[4];
  expect(md_engine_step(NULL) == -1, "step(NULL) fails");
  expect_error("engine is NULL", "step(NULL)");
  expect(md_engine_add_request(NULL, tok, 1, NULL) == -1, "add_request(NULL) fails");
  expect(md_engine_cancel(NULL, 1) == -1, "cancel(NULL) fails");
  expect(md_request_tokens(NULL, 1, tok, 4) == -1, "tokens(NULL) fails");
  expect(md_request_stats_get(NULL, 1, NULL) == -1, "stats(NULL) fails");
  expect(md_engine_info(NULL) == NULL, "info(NULL) fails");
  expect(md_engine_set_param(NULL, "draft", "kv_window", 1) == -1, "set_param(NULL) fails");
  expect(md_engine_set_gamma(NULL, MD_GAMMA_AUTO) == -1, "set_gamma(NULL) fails");
  int64_t rounds[4];
  expect(md_engine_gamma_rounds(NULL, rounds, 4) == -1, "gamma_rounds(NULL) fails");
  double times[MD_STEP_KINDS * MD_KERNEL_CLASSES];
  expect(md_engine_kernel_times(NULL, times, MD_STEP_KINDS * MD_KERNEL_CLASSES) == -1, "kernel_times(NULL) fails");
  md_engine_destroy(NULL); /* a no-op, like free(NULL) */

  expect(md_model_check("/nonexistent", "bf16") == -1, "check of a missing dir fails");
  expect_error("/nonexistent/config.json: cannot open", "missing config");
  expect(md_model_check("/nonexistent", "int8") == -1, "check with a bad dtype fails");
  expect_error("dtype 'int8'", "bad dtype");
  if (failures) return 1;
  printf("capi error paths ok\n");
  return 0;
}

static int check(const char* dir, const char* dtype) {
  if (md_model_check(dir, dtype) != 0) {
    printf("%s\n", md_last_error());
    return 1;
  }
  printf("ok\n");
  return 0;
}

static int generate(int argc, char** argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: capi_test generate <model_dir> <module.so> <ar|spec> <gamma|auto|off> <max_tokens> <tok>...\n");
    return 2;
  }
  md_engine_options o;
  md_engine_options_default(&o);
  o.mode = strcmp(argv[4], "ar") == 0 ? MD_MODE_AR : MD_MODE_SPEC;
  o.gamma = strcmp(argv[5], "auto") == 0 ? MD_GAMMA_AUTO : strcmp(argv[5], "off") == 0 ? MD_GAMMA_OFF : atoi(argv[5]);
  o.keep_logits = 1;
  md_engine* e = md_engine_create(argv[2], argv[3], &o);
  if (!e) {
    printf("error: %s\n", md_last_error());
    return 1;
  }
  int n = argc - 7;
  int32_t* prompt = malloc(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < n; ++i) prompt[i] = atoi(argv[7 + i]);
  md_request_options ro;
  md_request_options_default(&ro);
  ro.max_tokens = atoi(argv[6]);
  ro.ignore_eos = 1;
  int64_t id = md_engine_add_request(e, prompt, n, &ro);
  free(prompt);
  if (id < 0 || md_engine_run(e) != 0) {
    printf("error: %s\n", md_last_error());
    md_engine_destroy(e);
    return 1;
  }
  int32_t out[4096];
  int32_t count = md_request_tokens(e, id, out, 4096);
  for (int i = 0; i < count; ++i) printf(i ? " %d" : "%d", out[i]);
  printf("\n");
  md_request_stats s;
  md_request_stats_get(e, id, &s);
  printf("{\"generated\":%d,\"rounds\":%d,\"drafted\":%d,\"accepted\":%d,\"finish\":%d,\"state\":%d}\n", s.generated,
         s.rounds, s.drafted, s.accepted, s.finish_reason, s.state);
  md_engine_stats es;
  md_engine_stats_get(e, &es);
  int64_t by_gamma[17] = {0};
  int32_t slots = md_engine_gamma_rounds(e, by_gamma, 17);
  expect(slots >= 2 && slots <= 17, "gamma_rounds returns the module's gamma + 1");
  printf("{\"gamma\":%d,\"meanGamma\":%.17g,\"gammaRounds\":[", es.gamma, es.mean_gamma);
  for (int32_t g = 0; g < slots; ++g) printf(g ? ",%lld" : "%lld", (long long)by_gamma[g]);
  printf("]}\n");
  double kt[MD_STEP_KINDS * MD_KERNEL_CLASSES];
  expect(md_engine_kernel_times(e, kt, 0) == MD_STEP_KINDS * MD_KERNEL_CLASSES, "kernel_times returns its length");
  expect(md_engine_kernel_times(e, kt, MD_STEP_KINDS * MD_KERNEL_CLASSES) == MD_STEP_KINDS * MD_KERNEL_CLASSES, "kernel_times");
  printf("{\"prefillS\":%.17g,\"decodeS\":%.17g,\"draftS\":%.17g,\"verifyS\":%.17g,\"kernelS\":[", es.prefill_s, es.decode_s,
         es.draft_s, es.verify_s);
  for (int i = 0; i < MD_STEP_KINDS * MD_KERNEL_CLASSES; ++i) printf(i ? ",%.17g" : "%.17g", kt[i]);
  printf("]}\n");
  expect(md_request_release(e, id) == 0, "release a finished request");
  expect(md_request_tokens(e, id, out, 1) == -1, "a released request is gone");
  md_engine_destroy(e);
  return failures ? 1 : 0;
}

static int isolate(int argc, char** argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: capi_test isolate <model_dir> <module.so> <bad_tok> <max_tokens> <tok>...\n");
    return 2;
  }
  md_engine* e = md_engine_create(argv[2], argv[3], NULL);
  if (!e) {
    printf("error: %s\n", md_last_error());
    return 1;
  }
  int n = argc - 6;
  int32_t* prompt = malloc(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < n; ++i) prompt[i] = atoi(argv[6 + i]);
  md_request_options ro;
  md_request_options_default(&ro);
  ro.max_tokens = atoi(argv[5]);
  ro.ignore_eos = 1;
  int64_t a = md_engine_add_request(e, prompt, n, &ro);
  free(prompt);
  expect(a > 0, "add request A");
  int32_t out[4096];
  int steps = 0;
  while (md_request_tokens(e, a, out, 0) < 1 && steps++ < 100) expect(md_engine_step(e) == 1, "A alone steps");
  int32_t bad = atoi(argv[4]);
  int64_t b = md_engine_add_request(e, &bad, 1, &ro);
  expect(b > 0, "add request B");
  /* B's prefill fails in the next step: md_engine_step reports it, and A is still live. */
  expect(md_engine_step(e) == -1, "the step that fails B returns -1");
  char want[64];
  snprintf(want, sizeof want, "request %lld: kernel md_embed failed", (long long)b);
  expect_error(want, "the failed step names B");
  md_engine_stats es;
  expect(md_engine_stats_get(e, &es) == 0 && es.live_requests == 1, "A is still live after B failed");
  /* A later failure (C, same bad prompt) must not stop md_engine_run before A is done. */
  int64_t c = md_engine_add_request(e, &bad, 1, &ro);
  expect(md_engine_run(e) == -1, "run reports the failure");
  snprintf(want, sizeof want, "request %lld: kernel md_embed failed", (long long)c);
  expect_error(want, "run names the failed request");
  md_request_stats s;
  expect(md_request_stats_get(e, a, &s) == 0 && s.state == MD_REQ_DONE && s.finish_reason == MD_FINISH_LENGTH, "A finished normally");
  expect(md_request_stats_get(e, b, &s) == 0 && s.state == MD_REQ_FAILED && s.finish_reason == MD_FINISH_ERROR, "B failed");
  expect(md_request_stats_get(e, c, &s) == 0 && s.state == MD_REQ_FAILED, "C failed");
  const char* berr = md_request_error(e, b);
  expect(berr && strstr(berr, "kernel md_embed failed: invalid argument") != NULL, "B's error names the kernel");
  expect(md_engine_stats_get(e, &es) == 0 && es.live_requests == 0, "nothing live");
  int32_t count = md_request_tokens(e, a, out, 4096);
  for (int i = 0; i < count; ++i) printf(i ? " %d" : "%d", out[i]);
  printf("\n");
  md_engine_destroy(e);
  return failures ? 1 : 0;
}

static int cancel(int argc, char** argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: capi_test cancel <model_dir> <module.so> <max_tokens> <tok>...\n");
    return 2;
  }
  md_engine* e = md_engine_create(argv[2], argv[3], NULL);
  if (!e) {
    printf("error: %s\n", md_last_error());
    return 1;
  }
  md_engine_stats es;
  expect(md_engine_stats_get(e, &es) == 0, "stats");
  const int32_t all_pages = es.free_pages;
  int n = argc - 5;
  int32_t* prompt = malloc(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < n; ++i) prompt[i] = atoi(argv[5 + i]);
  md_request_options ro;
  md_request_options_default(&ro);
  ro.max_tokens = atoi(argv[4]);
  ro.ignore_eos = 1;
  int64_t a = md_engine_add_request(e, prompt, n, &ro);
  int64_t b = md_engine_add_request(e, prompt, n, &ro);
  free(prompt);
  expect(a > 0 && b > 0, "add requests A and B");
  expect(md_engine_cancel(e, b + 100) == -1, "cancel of an id never issued fails");
  expect_error("was never issued", "cancel of an unknown id");
  int32_t out[4096];
  int steps = 0;
  while (md_request_tokens(e, b, out, 0) < 2 && steps++ < 100) expect(md_engine_step(e) == 2, "A and B step");
  int32_t had = md_request_tokens(e, b, out, 0);
  expect(md_engine_stats_get(e, &es) == 0 && es.free_pages < all_pages, "A and B hold pages");
  const int32_t held = es.free_pages;
  expect(md_engine_cancel(e, b) == 0, "cancel B");
  expect(md_engine_step(e) == 1, "the next step ends B; A is live");
  md_request_stats s;
  expect(md_request_stats_get(e, b, &s) == 0 && s.state == MD_REQ_DONE && s.finish_reason == MD_FINISH_CANCELLED, "B cancelled");
  expect(md_request_tokens(e, b, out, 0) == had, "B keeps the tokens it had");
  expect(md_engine_stats_get(e, &es) == 0 && es.free_pages > held, "B's pages are free after that step");
  expect(md_engine_cancel(e, b) == 0, "cancelling a finished request is a no-op");
  expect(md_engine_run(e) == 0, "A runs to the end");
  expect(md_request_stats_get(e, a, &s) == 0 && s.state == MD_REQ_DONE && s.finish_reason == MD_FINISH_LENGTH, "A finished normally");
  expect(md_request_stats_get(e, b, &s) == 0 && s.finish_reason == MD_FINISH_CANCELLED, "B is still cancelled");
  expect(md_engine_stats_get(e, &es) == 0 && es.free_pages == all_pages && es.live_requests == 0, "every page free");
  int32_t count = md_request_tokens(e, a, out, 4096);
  for (int i = 0; i < count; ++i) printf(i ? " %d" : "%d", out[i]);
  printf("\n");
  md_engine_destroy(e);
  return failures ? 1 : 0;
}

/* Decodes one request to the end; its tokens into out (count returned), -1 on failure. */
static int32_t decode_one(md_engine* e, const int32_t* prompt, int n, const md_request_options* ro, int32_t* out, uint64_t* seed) {
  int64_t id = md_engine_add_request(e, prompt, n, ro);
  if (id < 0 || md_engine_run(e) != 0) return -1;
  int32_t count = md_request_tokens(e, id, out, 256);
  expect(md_request_seed(e, id, seed) == 0, "md_request_seed");
  expect(md_request_release(e, id) == 0, "release");
  return count;
}

static int sampling(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: capi_test sampling <model_dir> <module.so> <tok>...\n");
    return 2;
  }
  md_engine_options o;
  md_engine_options_default(&o);
  o.mode = MD_MODE_AR;
  md_engine* e = md_engine_create(argv[2], argv[3], &o);
  if (!e) {
    printf("error: %s\n", md_last_error());
    return 1;
  }
  int n = argc - 4;
  int32_t prompt[256];
  for (int i = 0; i < n && i < 256; ++i) prompt[i] = atoi(argv[4 + i]);
  md_request_options def;
  md_request_options_default(&def);
  expect(def.temperature == 0.0f && def.top_k == 0 && def.top_p == 1.0f && def.min_p == 0.0f && def.has_seed == 0, "default sampling options are greedy");
  def.max_tokens = 12;
  def.ignore_eos = 1;
  struct {
    float temperature, top_p, min_p;
    int32_t top_k;
    const char* message;
  } bad[] = {
      {-1.0f, 1.0f, 0.0f, 0, "request: temperature must be a finite number >= 0 (0 is greedy), got -1"},
      {NAN, 1.0f, 0.0f, 0, "request: temperature must be a finite number >= 0 (0 is greedy), got NaN"},
      {INFINITY, 1.0f, 0.0f, 0, "request: temperature must be a finite number >= 0 (0 is greedy), got Infinity"},
      {1.0f, 1.0f, 0.0f, -2, "request: top_k must be an integer >= 0 (0 keeps every token), got -2"},
      {1.0f, 0.0f, 0.0f, 0, "request: top_p must be in (0, 1] (1 keeps every token), got 0"},
      {1.0f, 1.25f, 0.0f, 0, "request: top_p must be in (0, 1] (1 keeps every token), got 1.25"},
      {1.0f, NAN, 0.0f, 0, "request: top_p must be in (0, 1] (1 keeps every token), got NaN"},
      {1.0f, 1.0f, -0.5f, 0, "request: min_p must be in [0, 1] (0 keeps every token), got -0.5"},
      {1.0f, 1.0f, 1.5f, 0, "request: min_p must be in [0, 1] (0 keeps every token), got 1.5"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    md_request_options ro = def;
    ro.temperature = bad[i].temperature;
    ro.top_p = bad[i].top_p;
    ro.min_p = bad[i].min_p;
    ro.top_k = bad[i].top_k;
    expect(md_engine_add_request(e, prompt, n, &ro) == -1, bad[i].message);
    expect_error(bad[i].message, bad[i].message);
  }
  md_engine_stats es;
  expect(md_engine_stats_get(e, &es) == 0 && es.live_requests == 0, "nothing queued");

  md_request_options ro = def;
  ro.temperature = 0.8f;
  ro.top_k = 40;
  ro.top_p = 0.95f;
  ro.has_seed = 1;
  ro.seed = 0xfedcba9876543210ull;
  int32_t a[256], b[256], c[256], d[256];
  uint64_t sa = 0, sb = 0, sc = 0, sd = 0;
  int32_t na = decode_one(e, prompt, n, &ro, a, &sa);
  int32_t nb = decode_one(e, prompt, n, &ro, b, &sb);
  expect(na == 12 && nb == 12 && memcmp(a, b, sizeof(int32_t) * 12) == 0, "a seeded request replays");
  expect(sa == 0xfedcba9876543210ull && sb == sa, "the seed is reported");
  ro.has_seed = 0;
  int32_t nc = decode_one(e, prompt, n, &ro, c, &sc);
  expect(nc == 12 && sc < (1ull << 53), "an unseeded request gets a seed below 2^53");
  ro.has_seed = 1;
  ro.seed = sc;
  int32_t nd = decode_one(e, prompt, n, &ro, d, &sd);
  expect(nd == 12 && memcmp(c, d, sizeof(int32_t) * 12) == 0 && sd == sc, "its seed replays it");
  uint64_t dummy;
  expect(md_request_seed(e, 999, &dummy) == -1, "seed of an unknown request fails");
  md_engine_destroy(e);
  if (failures) return 1;
  printf("capi sampling ok\n");
  return 0;
}

/* md_cuda_available: prints "1", or "0: <reason>". */
static int cuda(void) {
  if (md_cuda_available()) printf("1\n");
  else printf("0: %s\n", md_last_error());
  return 0;
}

/* Decodes the prompt on a spec engine; rows (max_tokens x vocab floats) get each token's logits. */
static int logits(int argc, char** argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: capi_test logits <model_dir> <module.so> <max_tokens> <tok>...\n");
    return 2;
  }
  const int max_tokens = atoi(argv[4]), n = argc - 5;
  int32_t* prompt = malloc(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < n; ++i) prompt[i] = atoi(argv[5 + i]);
  md_request_options ro;
  md_request_options_default(&ro);
  ro.max_tokens = max_tokens;
  ro.ignore_eos = 1;
  expect(ro.keep_logits == 0, "requests keep no logits by default");
  float* rows[2] = {NULL, NULL};
  int32_t vocab = 0;  /* rows hold up to 65536 floats a token (md_request_logits refuses a larger vocab) */
  for (int pass = 0; pass < 2; ++pass) {
    md_engine_options o;
    md_engine_options_default(&o);
    o.keep_logits = pass == 0;  /* pass 0: the engine keeps every request's; pass 1: only the request's flag */
    md_engine* e = md_engine_create(argv[2], argv[3], &o);
    if (!e) {
      printf("error: %s\n", md_last_error());
      return 1;
    }
    md_request_options keep = ro;
    keep.keep_logits = pass == 1;
    int64_t id = md_engine_add_request(e, prompt, n, &keep);
    int64_t other = pass == 1 ? md_engine_add_request(e, prompt, n, &ro) : -1;
    expect(id > 0 && md_engine_run(e) == 0, "decode");
    float probe[1];
    expect(md_request_logits(e, id, 0, probe, 1) == -1, "md_request_logits refuses a short buffer");
    if (pass == 1) {
      expect(md_request_logits(e, other, 0, probe, 1) == -1 && strstr(md_last_error(), "keeps logits") != NULL,
             "a request without keep_logits on an engine without it has no logits");
    }
    rows[pass] = malloc(sizeof(float) * (size_t)max_tokens * 65536);
    for (int t = 0; t < max_tokens; ++t) {
      int32_t v = md_request_logits(e, id, t, rows[pass] + (size_t)t * 65536, 65536);
      expect(v > 0, "md_request_logits");
      vocab = v;
    }
    md_engine_destroy(e);
  }
  for (int t = 0; t < max_tokens; ++t)
    expect(memcmp(rows[0] + (size_t)t * 65536, rows[1] + (size_t)t * 65536, sizeof(float) * (size_t)vocab) == 0,
           "the request's logits are bitwise the keep_logits engine's");
  free(rows[0]);
  free(rows[1]);
  free(prompt);
  if (!failures) printf("ok\n");
  return failures ? 1 : 0;
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "cuda") == 0) return cuda();
  if (argc >= 3 && strcmp(argv[1], "errors") == 0) return errors(argv[2]);
  if (argc == 4 && strcmp(argv[1], "check") == 0) return check(argv[2], argv[3]);
  if (argc >= 2 && strcmp(argv[1], "generate") == 0) return generate(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "isolate") == 0) return isolate(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "cancel") == 0) return cancel(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "sampling") == 0) return sampling(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "logits") == 0) return logits(argc, argv);
  fprintf(stderr, "usage: capi_test errors <lib.so> | check <model_dir> <dtype> | generate ... | isolate ... | cancel ... | sampling ... | logits ... | cuda\n");
  return 2;
}
