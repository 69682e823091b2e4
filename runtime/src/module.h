// Loading a generated module: dlopen the .so, read its embedded manifest, resolve every entry point of the
// ABI (per bucket where the ABI says so), and check the manifest against the model config. The kernel
// table is md_abi.h's X-macro lists, walked: a kernel declared in codegen/abi.ts is a field here and is
// resolved on load with no edit to this file.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "dtype.h"
#include "model_config.h"
#include "md_abi.h"  // generated/contract: rendered from codegen/abi.ts, the ABI's single source of truth

namespace md {

/** A runtime parameter of an attention pass, in md_attn_args.params order. */
struct PassParam {
  std::string key;  // attn_<name> / kv_<name>
  std::string name;
  float value = 0;  // the spec's default
  bool i32 = false;  // kernels read it as md_param_i32(value): only integers up to 2^24 survive the float
};

// One field per kernel of a list: `md_<kind>_fn <name>`.
#define MD_KERNEL_FIELD(name, kind) md_##kind##_fn name = nullptr;
#define MD_EXTRA_FIELD(name) md_##name##_fn name = nullptr;

/**
 * Kernels instantiated per batch bucket (rows <= bucket * (gamma + 1)): MD_BUCKET_KERNELS. The engine runs
 * the LM head fused (lm_head_argmax); gemm_lm_head, with Module::argmax, is its unfused reference.
 */
struct BucketKernels {
  int bucket = 0;
  int max_rows = 0;
  MD_BUCKET_KERNELS(MD_KERNEL_FIELD)
};

/** The module's other exports: MD_MODULE_EXTRAS. */
struct ModuleExtras {
  MD_MODULE_EXTRAS(MD_EXTRA_FIELD)
};

struct ModuleManifest {
  std::string name, hash, arch, source;
  DType dtype = DType::F32;
  int gamma = 0;               // the most tokens a round may draft
  bool adaptive_gamma = false;  // built with gamma 'auto': engines choose 1..gamma per round by default
  std::vector<int> buckets;  // ascending
  int max_seq = 0;
  int page_size = 0;
  int pages_per_seq = 0;
  std::vector<PassParam> target_params, draft_params;
  std::string verify_name;  // the verifier's name in the spec
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
  /** A CUDA module built for the SIMT emulator (g++ -DMD_SIMT_EMU): its "device" memory is host memory. */
  bool emulated() const { return emulated_; }
  /** The smallest bucket with at least `seqs` sequences and `rows` rows, or null if none holds them. */
  const BucketKernels* bucket_for(int seqs, int rows) const;
  const BucketKernels& largest_bucket() const { return buckets_.back(); }
  /** Message for a non-zero kernel status. */
  std::string status_string(int status) const;
  const ModuleExtras& extras() const { return extras_; }

  // The bucket-free kernels: MD_SHARED_KERNELS.
  MD_SHARED_KERNELS(MD_KERNEL_FIELD)

 private:
  void* symbol(const std::string& name);

  std::string path_;
  void* handle_ = nullptr;
  bool emulated_ = false;
  ModuleExtras extras_;
  ModuleManifest manifest_;
  std::vector<BucketKernels> buckets_;
};

}  // namespace md

#undef MD_KERNEL_FIELD
#undef MD_EXTRA_FIELD
