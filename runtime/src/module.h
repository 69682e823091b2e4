// Loading a generated module: dlopen the .so, read its embedded manifest, resolve every entry point the
// engine calls (per bucket where the ABI says so), and check the manifest against the model config.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "dtype.h"
#include "model_config.h"
#include "md_abi.h"  // templates/common: rendered from codegen/abi.ts, the ABI's single source of truth

namespace md {

/** A runtime parameter of an attention pass, in md_attn_args.params order. */
struct PassParam {
  std::string key;  // attn_<name> / kv_<name>
  std::string name;
  float value = 0;  // the spec's default
  bool i32 = false;  // kernels read it as md_param_i32(value): only integers up to 2^24 survive the float
};

/** Kernels instantiated per batch bucket (rows <= bucket * (gamma + 1)). */
struct BucketKernels {
  int bucket = 0;
  int max_rows = 0;
  md_gemm_fn gemm_q, gemm_kv, gemm_o, gemm_gate_up, gemm_down;  // the LM head runs fused: lm_head_argmax
  md_attn_fn attn_target, attn_draft;
  md_lm_head_argmax_fn lm_head_argmax;
};

struct ModuleManifest {
  std::string name, hash, arch, source;
  DType dtype = DType::F32;
  int gamma = 0;
  std::vector<int> buckets;  // ascending
  int max_seq = 0;
  int page_size = 0;
  int pages_per_seq = 0;
  std::vector<PassParam> target_params, draft_params;
  std::string verify_mode;  // greedy | sample
  std::string json;         // the full text
};

/** Parses manifest.json text; `where` names it in errors. Throws md::Error. */
ModuleManifest parse_manifest(const std::string& text, const std::string& where);

/** Checks the manifest's model block against a model's config.json; the error names the differing field. */
void check_manifest_model(const std::string& manifest_text, const std::string& manifest_where, const ModelConfig& c,
                          const std::string& config_where);

class Module {
 public:
  /** dlopens `path` and resolves everything; throws md::Error naming the path and the missing symbol. */
  explicit Module(const std::string& path);
  ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const ModuleManifest& manifest() const { return manifest_; }
  const std::string& path() const { return path_; }
  /** The smallest bucket with at least `seqs` sequences and `rows` rows, or null if none holds them. */
  const BucketKernels* bucket_for(int seqs, int rows) const;
  const BucketKernels& largest_bucket() const { return buckets_.back(); }
  /** Message for a non-zero kernel status. */
  std::string status_string(int status) const;

  md_embed_fn embed;
  md_rmsnorm_fn rmsnorm;
  md_add_rmsnorm_fn add_rmsnorm;
  md_add_fn add;
  md_swiglu_fn swiglu;
  md_rope_append_fn rope_append;
  md_verify_greedy_fn verify_greedy;
  md_attn_workspace_floats_fn attn_workspace_floats;

 private:
  void* symbol(const std::string& name);

  std::string path_;
  void* handle_ = nullptr;
  md_status_string_fn status_string_ = nullptr;
  ModuleManifest manifest_;
  std::vector<BucketKernels> buckets_;
};

}  // namespace md
