/* GPU suite, end to end through the C API (C99): speculative == autoregressive on a tiny random model with
 * a CUDA module, tokens and logits bitwise, and the per-round times T_draft / T_ar and T_verify / T_ar.
 * The speculative engine's draft steps must run as captured device graphs (md_engine_info "draftGraphs"),
 * and an eager speculative engine (no graphs) must accept exactly the drafts it accepts, per request: a
 * replay that drafts from stale inputs costs acceptance, not tokens, so only the counts show it.
 *   e2e <model_dir> <module.so> <vocab> <json_out> [--emulated] [--requests N] [--max-tokens M]
 * Exit 0: equal; 1: a difference or a failure; 3: md_cuda_available() says this runtime cannot run CUDA
 * modules here (built without CUDA, no GPU, old driver), which the suite reports as not available, never as
 * passed. --emulated: the module is built for the SIMT emulator (the suite's dry run), which every runtime
 * runs on the host. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "magicdec.h"

enum { REQUESTS_MAX = 8, MAX_TOKENS_MAX = 40 };
static int REQUESTS = REQUESTS_MAX, MAX_TOKENS = MAX_TOKENS_MAX;

enum { AR, SPEC, EAGER, ENGINES };
static const char* const NAMES[ENGINES] = {"ar", "spec", "spec, eager"};
static int64_t ids[ENGINES][REQUESTS_MAX];

static md_engine* create(const char* model, const char* module, int e) {
  md_engine_options o;
  md_engine_options_default(&o);
  o.mode = e == AR ? MD_MODE_AR : MD_MODE_SPEC;
  o.eager = e == EAGER;
  o.keep_logits = 1;
  return md_engine_create(model, module, &o);
}

static void fail_json(const char* path, const char* available, const char* what, const char* err) {
  FILE* f = fopen(path, "w");
  if (!f) return;
  fprintf(f, "{\"available\": %s, \"error\": \"", available);
  for (const char* c = what; *c; ++c) fputc(*c == '"' || *c == '\\' || (unsigned char)*c < 0x20 ? ' ' : *c, f);
  fputs(": ", f);
  for (const char* c = err; *c; ++c) fputc(*c == '"' || *c == '\\' || (unsigned char)*c < 0x20 ? ' ' : *c, f);
  fputs("\"}\n", f);
  fclose(f);
}

int main(int argc, char** argv) {
  int emulated = 0;
  for (int i = 5; i < argc; ++i) {
    if (!strcmp(argv[i], "--emulated")) emulated = 1;
    else if (!strcmp(argv[i], "--requests") && i + 1 < argc) REQUESTS = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--max-tokens") && i + 1 < argc) MAX_TOKENS = atoi(argv[++i]);
    else argc = 0;
  }
  if (argc < 5 || REQUESTS < 1 || REQUESTS > REQUESTS_MAX || MAX_TOKENS < 1 || MAX_TOKENS > MAX_TOKENS_MAX) {
    fprintf(stderr, "usage: e2e <model_dir> <module.so> <vocab> <json_out> [--emulated] [--requests 1..8] [--max-tokens 1..40]\n");
    return 2;
  }
  const char *model = argv[1], *module = argv[2], *json = argv[4];
  const int vocab = atoi(argv[3]);
  if (!emulated && !md_cuda_available()) {
    const char* err = md_last_error();
    printf("not available: runtime has no CUDA engine here: %s\n", err);
    fail_json(json, "false", "md_cuda_available", err);
    return 3;
  }
  md_engine* eng[ENGINES];
  for (int e = 0; e < ENGINES; ++e)
    if (!(eng[e] = create(model, module, e))) {
      char what[64];
      snprintf(what, sizeof what, "md_engine_create (%s)", NAMES[e]);
      printf("FAIL %s: %s\n", what, md_last_error());
      fail_json(json, "true", what, md_last_error());
      return 1;
    }
  /* A short draft window (the default deployment's draft is sink + window), so that drafts get rejected and
   * the rollback paths run: spec must still equal AR. */
  const int short_window = md_engine_set_param(eng[SPEC], "draft", "kv_window", 16) == 0 &&
                           md_engine_set_param(eng[EAGER], "draft", "kv_window", 16) == 0;
  /* The same prompts in both engines: random tokens (fixed seed), lengths 3..63. */
  unsigned s = 12345u;
  int32_t prompts[REQUESTS_MAX][64], lens[REQUESTS_MAX];
  for (int r = 0; r < REQUESTS; ++r) {
    lens[r] = 3 + (int)((s = s * 1103515245u + 12345u) >> 16) % 61;
    for (int i = 0; i < lens[r]; ++i) prompts[r][i] = 3 + (int)((s = s * 1103515245u + 12345u) >> 8) % (vocab - 3);
  }
  for (int e = 0; e < ENGINES; ++e) {
    md_request_options ro;
    md_request_options_default(&ro);
    ro.max_tokens = MAX_TOKENS;
    ro.ignore_eos = 1;
    for (int r = 0; r < REQUESTS; ++r)
      if ((ids[e][r] = md_engine_add_request(eng[e], prompts[r], lens[r], &ro)) < 0) {
        printf("FAIL add_request: %s\n", md_last_error());
        fail_json(json, "true", "md_engine_add_request", md_last_error());
        return 1;
      }
    if (md_engine_run(eng[e]) != 0) {
      char what[64];
      snprintf(what, sizeof what, "md_engine_run (%s)", NAMES[e]);
      printf("FAIL %s: %s\n", what, md_last_error());
      fail_json(json, "true", what, md_last_error());
      return 1;
    }
  }
  int token_diffs = 0, logit_diffs = 0, tokens = 0, accept_diffs = 0;
  float* la = malloc(sizeof(float) * vocab);
  float* lb = malloc(sizeof(float) * vocab);
  for (int e = SPEC; e < ENGINES; ++e)
    for (int r = 0; r < REQUESTS; ++r) {
      int32_t ta[MAX_TOKENS_MAX], tb[MAX_TOKENS_MAX];
      const int na = md_request_tokens(eng[AR], ids[AR][r], ta, MAX_TOKENS), nb = md_request_tokens(eng[e], ids[e][r], tb, MAX_TOKENS);
      if (na != nb || na <= 0 || memcmp(ta, tb, sizeof(int32_t) * (size_t)na) != 0) {
        ++token_diffs;
        printf("FAIL request %d: %d AR tokens, %d speculative (%s), or they differ\n", r, na, nb, NAMES[e]);
        continue;
      }
      if (e == SPEC) tokens += na;
      for (int i = 0; i < na; ++i)
        if (md_request_logits(eng[AR], ids[AR][r], i, la, vocab) != vocab || md_request_logits(eng[e], ids[e][r], i, lb, vocab) != vocab ||
            memcmp(la, lb, sizeof(float) * (size_t)vocab) != 0) {
          ++logit_diffs;
          printf("FAIL request %d token %d (%s): logits differ bitwise (or are missing)\n", r, i, NAMES[e]);
          break;
        }
    }
  for (int r = 0; r < REQUESTS; ++r) {
    md_request_stats g, u;
    if (md_request_stats_get(eng[SPEC], ids[SPEC][r], &g) != 0 || md_request_stats_get(eng[EAGER], ids[EAGER][r], &u) != 0 ||
        g.drafted != u.drafted || g.accepted != u.accepted) {
      ++accept_diffs;
      printf("FAIL request %d: the graphs' rounds accepted %d of %d drafts, the eager rounds %d of %d\n", r, g.accepted, g.drafted, u.accepted,
             u.drafted);
    }
  }
  const char* info = md_engine_info(eng[SPEC]);
  const int captured = strstr(info, "\"draftGraphs\":\"captured\"") != NULL;
  if (!captured) printf("FAIL the draft steps ran uncaptured: %s\n", info);
  md_engine_stats a, b;
  md_engine_stats_get(eng[AR], &a);
  md_engine_stats_get(eng[SPEC], &b);
  const int failed = token_diffs + logit_diffs + accept_diffs + !captured;
  const double t_ar = a.ar_steps ? a.decode_s / (double)a.ar_steps : 0;
  const double t_draft = b.rounds ? b.draft_s / (double)b.rounds : 0, t_verify = b.rounds ? b.verify_s / (double)b.rounds : 0;
  printf("%s: %d requests, %d tokens%s; acceptance %.3f, mean gamma %.2f; per round T_draft/T_ar %.3f, T_verify/T_ar %.3f; draft graphs: %lld captured, %lld replays\n",
         failed ? "FAIL" : "PASS", REQUESTS, tokens, short_window ? ", draft window 16" : "", b.acceptance, b.mean_gamma, t_ar > 0 ? t_draft / t_ar : 0,
         t_ar > 0 ? t_verify / t_ar : 0, (long long)b.graph_captures, (long long)b.graph_replays);
  FILE* f = fopen(json, "w");
  if (f) {
    fprintf(f,
            "{\"available\": true, \"emulated\": %s, \"draft_window_16\": %s, \"requests\": %d, \"tokens\": %d, \"token_diffs\": %d, \"logit_diffs\": %d, "
            "\"accept_diffs\": %d, \"draft_graphs_captured\": %s, \"graph_captures\": %lld, \"graph_replays\": %lld, \"ar_steps\": %lld, "
            "\"rounds\": %lld, \"acceptance\": %.4f, \"mean_gamma\": %.3f, \"t_ar_s\": %.6g, \"t_draft_s\": %.6g, \"t_verify_s\": %.6g, "
            "\"t_draft_over_ar\": %.4f, \"t_verify_over_ar\": %.4f, \"info\": %s}\n",
            emulated ? "true" : "false", short_window ? "true" : "false", REQUESTS, tokens, token_diffs, logit_diffs, accept_diffs,
            captured ? "true" : "false", (long long)b.graph_captures, (long long)b.graph_replays, (long long)a.ar_steps, (long long)b.rounds, b.acceptance, b.mean_gamma, t_ar, t_draft, t_verify,
            t_ar > 0 ? t_draft / t_ar : 0, t_ar > 0 ? t_verify / t_ar : 0, md_engine_info(eng[SPEC]));
    fclose(f);
  }
  free(la);
  free(lb);
  for (int e = 0; e < ENGINES; ++e) md_engine_destroy(eng[e]);
  return failed ? 1 : 0;
}
