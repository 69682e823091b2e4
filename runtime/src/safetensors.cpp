#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>

#include "error.h"
#include "json.h"

namespace md {

namespace {

// The same cap as model/safetensors.ts (MAX_HEADER_BYTES): a header is tensor names and shapes, so a
// larger one is a broken or hostile file, not a model.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer; fstat then refuses anything but a file.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw Error(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw Error(path + ": cannot mmap: " + std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file referenced
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

size_t safetensors_dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

void SafetensorsSet::add_file(const std::string& path) {
  auto file = std::make_unique<MappedFile>(path);
  add_bytes(file->data(), file->size(), path);
  files_.push_back(std::move(file));
}

void SafetensorsSet::add_bytes(const uint8_t* base, size_t size, const std::string& path) {
  if (size < 8) throw Error(path + ": too short for a safetensors file (" + std::to_string(size) + " bytes)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];  // little-endian u64
  if (header_len > size - 8)
    throw Error(path + ": header length " + std::to_string(header_len) + " runs past the end of the file (" +
                std::to_string(size) + " bytes)");
  if (header_len > kMaxHeaderBytes)
    throw Error(path + ": header length " + std::to_string(header_len) + " exceeds the " +
                std::to_string(kMaxHeaderBytes) + "-byte limit");
  const json::Document doc =
      json::Document::parse(std::string_view(reinterpret_cast<const char*>(base + 8), size_t(header_len)), path + " (header)");
  const json::Value header = doc.root();
  if (!header.is_object()) throw Error(path + ": header must be a JSON object");
  const uint8_t* data = base + 8 + header_len;
  size_t data_size = size - 8 - size_t(header_len);

  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (const auto& [key, entry] : header.members()) {
    const std::string name(key);
    if (name == "__metadata__") continue;
    std::string where = path + ": tensor '" + name + "'";
    if (!entry.is_object()) throw Error(where + ": entry must be an object");
    std::optional<json::Value> dt = entry.get("dtype"), sh = entry.get("shape"), off = entry.get("data_offsets");
    if (!dt || !dt->is_string()) throw Error(where + ": missing string 'dtype'");
    if (!sh || !sh->is_array()) throw Error(where + ": missing array 'shape'");
    std::vector<json::Value> offsets = off ? off->items() : std::vector<json::Value>{};
    if (!off || !off->is_array() || offsets.size() != 2 || !offsets[0].uint64() || !offsets[1].uint64())
      throw Error(where + ": 'data_offsets' must be [begin, end] with non-negative integers");
    TensorView t;
    t.name = name;
    t.file = path;
    t.dtype = std::string(*dt->string());
    size_t elem = safetensors_dtype_size(t.dtype);
    if (elem == 0) throw Error(where + ": unknown dtype '" + t.dtype + "'");
    uint64_t numel = 1;
    for (const json::Value& d : sh->items()) {
      std::optional<uint64_t> v = d.uint64();
      if (!v) throw Error(where + ": shape must hold non-negative integers, got " + sh->dump());
      if (*v != 0 && numel > (uint64_t(1) << 62) / *v) throw Error(where + ": shape " + sh->dump() + " overflows");
      numel *= *v;
      t.shape.push_back(int64_t(*v));
    }
    uint64_t b = *offsets[0].uint64(), e = *offsets[1].uint64();
    if (b > e || e > data_size)
      throw Error(where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                  "] fall outside the data section (" + std::to_string(data_size) + " bytes)");
    uint64_t need;
    if (__builtin_mul_overflow(numel, uint64_t(elem), &need))
      throw Error(where + ": shape " + sh->dump() + " of " + t.dtype + " needs more than 2^64 bytes");
    if (e - b != need)
      throw Error(where + ": data_offsets span " + std::to_string(e - b) + " bytes but shape " + sh->dump() + " of " +
                  t.dtype + " needs " + std::to_string(need));
    t.data = data + b;
    t.nbytes = size_t(e - b);
    spans.push_back({b, e, name});
    if (!index_.empty()) {
      auto it = index_.find(name);
      if (it == index_.end() || it->second != path) continue;  // the index maps this name elsewhere (or not at all)
    }
    if (tensors_.count(name)) throw Error(where + ": defined twice (also in " + tensors_[name].file + ")");
    tensors_.emplace(name, std::move(t));
  }
  // The format's rule (and model/safetensors.ts's): the tensors tile the data section exactly, so no byte
  // is read as two tensors and none hides unlisted content.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t cursor = 0;
  const Span* prev = nullptr;
  auto range = [](uint64_t a, uint64_t b) { return "[" + std::to_string(a) + ", " + std::to_string(b); };
  for (const Span& sp : spans) {
    if (sp.begin < cursor)
      throw Error(path + ": tensors '" + prev->name + "' " + range(prev->begin, prev->end) + "] and '" + sp.name + "' " +
                  range(sp.begin, sp.end) + "] overlap");
    if (sp.begin > cursor)
      throw Error(path + ": data bytes " + range(cursor, sp.begin) + ") before tensor '" + sp.name + "' belong to no tensor");
    cursor = sp.end;
    prev = &sp;
  }
  if (cursor != data_size)
    throw Error(path + ": data bytes " + range(cursor, data_size) + ") at the end belong to no tensor");
}

std::map<std::string, std::string> parse_safetensors_index(std::string_view text, const std::string& index_path,
                                                           const std::string& dir) {
  const json::Document idx = json::Document::parse(text, index_path);
  std::optional<json::Value> wm = idx.root().get("weight_map");
  if (!wm || !wm->is_object() || wm->size() == 0)
    throw Error(index_path + ": needs a non-empty object 'weight_map' (tensor name -> shard file)");
  std::map<std::string, std::string> index;
  for (const auto& [key, file] : wm->members()) {
    const std::string name(key);
    std::optional<std::string_view> f = file.string();
    if (!f || f->empty() || f->find('/') != std::string_view::npos)
      throw Error(index_path + ": weight_map['" + name + "'] must be a file name in the model directory");
    index[name] = dir + "/" + std::string(*f);
  }
  return index;
}

SafetensorsSet SafetensorsSet::open_dir(const std::string& dir) {
  SafetensorsSet set;
  std::string index_path = dir + "/model.safetensors.index.json";
  struct stat st;
  if (::stat(index_path.c_str(), &st) != 0) {
    set.add_file(dir + "/model.safetensors");
    return set;
  }
  set.index_ = parse_safetensors_index(json::read_regular_file(index_path), index_path, dir);
  std::set<std::string> shards;
  for (const auto& [name, file] : set.index_) shards.insert(file);
  for (const std::string& shard : shards) set.add_file(shard);
  for (auto& [name, file] : set.index_)
    if (!set.tensors_.count(name)) throw Error(index_path + ": maps tensor '" + name + "' to " + file + ", which does not contain it");
  return set;
}

const TensorView* SafetensorsSet::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace md
