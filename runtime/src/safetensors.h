// Memory-mapped safetensors files: a single model.safetensors or shards listed by
// model.safetensors.index.json. Parsing validates the header (size, JSON, dtype, shape, offsets inside the
// file); tensors are views into the mapping, nothing is copied.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace md {

/** A read-only mapping of one file; unmapped on destruction. */
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

struct TensorView {
  std::string name;
  std::string file;         // path of the file that holds it, for error messages
  std::string dtype;        // as written in the header (F32, BF16, ...); checked by the weight loader
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
};

/** All tensors of a model directory, by name. Keeps the mappings alive. */
class SafetensorsSet {
 public:
  /** Opens <dir>/model.safetensors.index.json if present, else <dir>/model.safetensors. Throws md::Error. */
  static SafetensorsSet open_dir(const std::string& dir);
  /** Maps one file, validates its header and adds its tensors (with an index: only those it maps to this file). */
  void add_file(const std::string& path);
  /**
   * Validates a safetensors image held in memory (`path` names it in errors) and adds its tensors as views
   * into it: the bytes must outlive the set. add_file maps a file and calls this; the fuzz targets call it
   * directly (runtime/fuzz/).
   */
  void add_bytes(const uint8_t* data, size_t size, const std::string& path);

  const TensorView* find(const std::string& name) const;
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  /** For each tensor, the file the index says holds it (empty for a single file). */
  const std::map<std::string, std::string>& index() const { return index_; }

 private:
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> index_;
};

/**
 * The weight_map of a model.safetensors.index.json (`text`, read from `index_path`): tensor name -> shard
 * path under `dir`. Throws md::Error when the map is missing, empty, or names anything but a plain file name.
 */
std::map<std::string, std::string> parse_safetensors_index(std::string_view text, const std::string& index_path,
                                                           const std::string& dir);

/** Bytes per element of a safetensors dtype name, or 0 if unknown. */
size_t safetensors_dtype_size(const std::string& dtype);

}  // namespace md
