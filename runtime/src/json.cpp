#include "json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <unordered_set>

#include "error.h"
#include "simdjson.h"

namespace md::json {

namespace dom = simdjson::dom;

static_assert(sizeof(dom::element) <= 16 && alignof(dom::element) <= 8 && std::is_trivially_copyable_v<dom::element>,
              "Value::element_ holds a simdjson::dom::element");

namespace {

/** Largest JSON file read_regular_file takes: a config or index is kilobytes; more is not a model's. */
constexpr size_t kMaxFileBytes = size_t(limits::kMaxJsonFileBytes);

// By value: a reference into a temporary simdjson_result would dangle in a range-for.
dom::array array_of(dom::element e) {
  dom::array a;
  if (e.get_array().get(a)) throw Error("internal error: JSON value is not an array");
  return a;
}

dom::object object_of(dom::element e) {
  dom::object o;
  if (e.get_object().get(o)) throw Error("internal error: JSON value is not an object");
  return o;
}

dom::element element_of(const unsigned char* storage) {
  dom::element e;
  std::memcpy(static_cast<void*>(&e), storage, sizeof e);
  return e;
}

std::string child_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

std::string index_path(const std::string& parent, size_t i) { return parent + "[" + std::to_string(i) + "]"; }

/** simdjson's error codes in the words of this runtime's messages. */
std::string describe(simdjson::error_code e) {
  switch (e) {
    case simdjson::EMPTY: return "the text is empty";
    case simdjson::DEPTH_ERROR: return "nesting deeper than " + std::to_string(kMaxDepth) + " arrays/objects";
    case simdjson::NUMBER_ERROR:
    case simdjson::BIGINT_ERROR: return "a number is malformed or out of range (integers: 64 bits, others: a double)";
    case simdjson::UTF8_ERROR: return "the text is not valid UTF-8";
    case simdjson::UNCLOSED_STRING: return "a string is not closed";
    case simdjson::STRING_ERROR: return "a string has a bad escape (or a lone surrogate)";
    case simdjson::UNESCAPED_CHARS: return "a string has an unescaped control character";
    case simdjson::T_ATOM_ERROR: return "a literal is not 'true'";
    case simdjson::F_ATOM_ERROR: return "a literal is not 'false'";
    case simdjson::N_ATOM_ERROR: return "a literal is not 'null'";
    case simdjson::CAPACITY: return "the text is too large";
    case simdjson::MEMALLOC: return "out of memory";
    default: return "bad structure (missing or extra commas, brackets, quotes, keys, or text after the value)";
  }
}

/**
 * What simdjson leaves to us, over the whole tree: duplicate keys (it keeps both) and nesting deeper than
 * kMaxDepth (its own limit, set one higher, bounds this recursion but does not count empty containers).
 */
void check_tree(dom::element e, const std::string& path, const std::string& where, size_t depth) {
  const auto t = e.type();
  if (t != dom::element_type::ARRAY && t != dom::element_type::OBJECT) return;
  if (depth > kMaxDepth) throw Error(where + ": not valid JSON: " + describe(simdjson::DEPTH_ERROR));
  if (t == dom::element_type::ARRAY) {
    size_t i = 0;
    for (dom::element x : array_of(e)) check_tree(x, index_path(path, i++), where, depth + 1);
    return;
  }
  dom::object o = object_of(e);
  std::unordered_set<std::string_view> seen;
  seen.reserve(o.size());
  for (dom::key_value_pair kv : o) {
    if (!seen.insert(kv.key).second)
      throw Error(where + ": duplicate key '" + std::string(kv.key) + "'" +
                  (path.empty() ? std::string(" in the top-level object") : " in '" + path + "'"));
    check_tree(kv.value, child_path(path, kv.key), where, depth + 1);
  }
}

}  // namespace

struct Document::Impl {
  dom::parser parser;
  dom::element root;
};

Document::Document(std::unique_ptr<Impl> impl, std::string where) : impl_(std::move(impl)), where_(std::move(where)) {}
Document::Document(Document&&) noexcept = default;
Document& Document::operator=(Document&&) noexcept = default;
Document::~Document() = default;

Document Document::parse(std::string_view text, const std::string& where) {
  // simdjson would skip a byte-order mark; JSON (RFC 8259) texts have none, and the TypeScript reader refuses it.
  if (text.substr(0, 3) == "\xef\xbb\xbf") throw Error(where + ": not valid JSON: starts with a byte-order mark");
  auto impl = std::make_unique<Impl>();
  // simdjson counts the root's level too; check_tree applies kMaxDepth exactly.
  if (auto e = impl->parser.allocate(std::max<size_t>(text.size(), 64), kMaxDepth + 2))
    throw Error(where + ": not valid JSON: " + describe(e));
  if (auto e = impl->parser.parse(text.data(), text.size()).get(impl->root))
    throw Error(where + ": not valid JSON: " + describe(e));
  check_tree(impl->root, "", where, 1);
  return Document(std::move(impl), where);
}

Document Document::read_file(const std::string& path) { return parse(read_regular_file(path), path); }

Value Document::root() const { return Value(this, &impl_->root, ""); }

Value::Value(const Document* doc, const void* element, std::string path) : doc_(doc), path_(std::move(path)) {
  std::memcpy(element_, element, sizeof(dom::element));
}

Value::Kind Value::kind() const {
  switch (element_of(element_).type()) {
    case dom::element_type::NULL_VALUE: return Kind::Null;
    case dom::element_type::BOOL: return Kind::Bool;
    case dom::element_type::INT64:
    case dom::element_type::UINT64: return Kind::Integer;
    case dom::element_type::DOUBLE: return Kind::Float;
    case dom::element_type::STRING: return Kind::String;
    case dom::element_type::ARRAY: return Kind::Array;
    case dom::element_type::OBJECT: return Kind::Object;
  }
  return Kind::Null;
}

std::optional<int64_t> Value::int64() const {
  dom::element e = element_of(element_);
  if (e.type() == dom::element_type::INT64) return e.get_int64().value_unsafe();
  return std::nullopt;  // UINT64 is used only for values above INT64_MAX
}

std::optional<uint64_t> Value::uint64() const {
  dom::element e = element_of(element_);
  if (e.type() == dom::element_type::UINT64) return e.get_uint64().value_unsafe();
  if (e.type() == dom::element_type::INT64 && e.get_int64().value_unsafe() >= 0) return uint64_t(e.get_int64().value_unsafe());
  return std::nullopt;
}

std::optional<double> Value::number() const {
  dom::element e = element_of(element_);
  if (!e.is_number()) return std::nullopt;
  return e.get_double().value_unsafe();
}

std::optional<bool> Value::boolean() const {
  dom::element e = element_of(element_);
  if (!e.is_bool()) return std::nullopt;
  return e.get_bool().value_unsafe();
}

std::optional<std::string_view> Value::string() const {
  dom::element e = element_of(element_);
  if (!e.is_string()) return std::nullopt;
  return e.get_string().value_unsafe();
}

std::vector<Value> Value::items() const {
  std::vector<Value> out;
  dom::element e = element_of(element_);
  if (!e.is_array()) return out;
  size_t i = 0;
  for (dom::element x : array_of(e)) out.push_back(Value(doc_, &x, index_path(path_, i++)));
  return out;
}

std::vector<std::pair<std::string_view, Value>> Value::members() const {
  std::vector<std::pair<std::string_view, Value>> out;
  dom::element e = element_of(element_);
  if (!e.is_object()) return out;
  for (dom::key_value_pair kv : object_of(e)) out.emplace_back(kv.key, Value(doc_, &kv.value, child_path(path_, kv.key)));
  return out;
}

size_t Value::size() const {
  dom::element e = element_of(element_);
  if (e.is_array()) return array_of(e).size();
  if (e.is_object()) return object_of(e).size();
  return 0;
}

std::optional<Value> Value::get(std::string_view key) const {
  dom::element e = element_of(element_);
  if (!e.is_object()) return std::nullopt;
  dom::element x;
  if (object_of(e).at_key(key).get(x)) return std::nullopt;
  return Value(doc_, &x, child_path(path_, key));
}

const std::string& Value::file() const { return doc_->where(); }

std::string Value::dump() const {
  constexpr size_t kMax = 80;
  std::string s = simdjson::minify(element_of(element_));
  if (s.size() > kMax) s = s.substr(0, kMax - 3) + "...";
  return s;
}

void Value::fail(const std::string& what) const { throw Error(file() + ": field '" + path_ + "' " + what); }

std::string read_regular_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer; fstat then refuses it.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error(path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
  if (size_t(st.st_size) > kMaxFileBytes)
    throw Error(path + ": " + std::to_string(st.st_size) + " bytes exceeds the " + std::to_string(kMaxFileBytes) +
                "-byte limit for a JSON file");
  std::string text(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(path + ": cannot read: " + std::strerror(errno));
    if (n == 0) break;  // the file shrank while we read it
    got += size_t(n);
  }
  text.resize(got);
  return text;
}

void Writer::separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_ += ',';
    first_.back() = false;
  }
}

Writer& Writer::begin_object() {
  separate();
  out_ += '{';
  first_.push_back(true);
  return *this;
}

Writer& Writer::end_object() {
  out_ += '}';
  first_.pop_back();
  return *this;
}

Writer& Writer::begin_array() {
  separate();
  out_ += '[';
  first_.push_back(true);
  return *this;
}

Writer& Writer::end_array() {
  out_ += ']';
  first_.pop_back();
  return *this;
}

Writer& Writer::key(std::string_view k) {
  value(k);
  out_ += ':';
  after_key_ = true;
  return *this;
}

Writer& Writer::value(std::string_view s) {
  separate();
  out_ += '"';
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out_ += '\\';
      out_ += ch;
    } else if (c < 0x20) {
      static const char* hex = "0123456789abcdef";
      out_ += "\\u00";
      out_ += hex[c >> 4];
      out_ += hex[c & 15];
    } else {
      out_ += ch;
    }
  }
  out_ += '"';
  return *this;
}

Writer& Writer::value(bool b) {
  separate();
  out_ += b ? "true" : "false";
  return *this;
}

Writer& Writer::value(int64_t i) {
  separate();
  out_ += std::to_string(i);
  return *this;
}

Writer& Writer::value(size_t u) {
  separate();
  out_ += std::to_string(u);
  return *this;
}

Writer& Writer::value(double d) {
  separate();
  if (!std::isfinite(d)) {
    out_ += "null";
    return *this;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  out_.append(buf, r.ptr);
  // Keep it a float when read back (as simdjson writes doubles): 1e-05 stays, 10000 becomes 10000.0.
  if (std::string_view(buf, size_t(r.ptr - buf)).find_first_of(".e") == std::string_view::npos) out_ += ".0";
  return *this;
}

}  // namespace md::json
