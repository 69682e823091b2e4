// The runtime's JSON: every file it reads (config.json, the module manifest, safetensors headers and the
// shard index) goes through json::Document, which parses with simdjson and adds the strictness simdjson
// leaves to the caller: duplicate keys and nesting deeper than kMaxDepth are refused. Numbers are checked
// by simdjson itself: an integer outside the 64-bit range or a float that overflows a double (1e400) makes
// the document invalid rather than turning into a rounded or infinite value.
//
// Every error is an md::Error of one line that names the file (the `where` given to parse) and the value's
// path in it (`rope_scaling.factor`, `eos_token_id[1]`).
//
// simdjson stays inside json.cpp: a Value holds its DOM element in opaque storage.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "md_limits.h"

namespace md::json {

/** Deepest nesting of arrays and objects a document may have (codegen/limits.ts MAX_JSON_DEPTH). */
constexpr size_t kMaxDepth = limits::kMaxJsonDepth;

class Document;

/** One value of a parsed Document, with its path for messages. Valid while its Document lives. */
class Value {
 public:
  enum class Kind { Null, Bool, Integer, Float, String, Array, Object };

  Kind kind() const;
  bool is_null() const { return kind() == Kind::Null; }
  bool is_bool() const { return kind() == Kind::Bool; }
  bool is_integer() const { return kind() == Kind::Integer; }  // written without fraction or exponent
  bool is_number() const { return kind() == Kind::Integer || kind() == Kind::Float; }
  bool is_string() const { return kind() == Kind::String; }
  bool is_array() const { return kind() == Kind::Array; }
  bool is_object() const { return kind() == Kind::Object; }

  /** An integer that fits int64 / uint64; nullopt for anything else (floats like 128.0 included). */
  std::optional<int64_t> int64() const;
  std::optional<uint64_t> uint64() const;
  /** Any number as a double (integers beyond 2^53 round); nullopt for non-numbers. */
  std::optional<double> number() const;
  std::optional<bool> boolean() const;
  std::optional<std::string_view> string() const;

  /** Elements of an array / members of an object, in document order; empty for scalars. */
  std::vector<Value> items() const;
  std::vector<std::pair<std::string_view, Value>> members() const;
  /** Number of elements or members (0 for scalars). */
  size_t size() const;
  /** The member `key` of an object; nullopt if absent or if this is not an object. */
  std::optional<Value> get(std::string_view key) const;

  /** Where this value is: "" for the root, else like `rope_scaling.factor` or `shape[2]`. */
  const std::string& path() const { return path_; }
  /** The document's name (the `where` given to Document::parse). */
  const std::string& file() const;
  /** Compact JSON text of the value for messages, cut to about 80 characters. */
  std::string dump() const;

  /** Throws "<file>: field '<path>' <what>". */
  [[noreturn]] void fail(const std::string& what) const;

 private:
  friend class Document;
  Value(const Document* doc, const void* element, std::string path);
  const Document* doc_ = nullptr;
  alignas(8) unsigned char element_[16];  // a simdjson::dom::element (checked in json.cpp)
  std::string path_;
};

/** A parsed JSON text. Move-only; Values point into it. */
class Document {
 public:
  /** Parses `text`, naming it `where` in errors. Throws md::Error for invalid JSON, duplicate keys, deep nesting. */
  static Document parse(std::string_view text, const std::string& where);
  /** Reads the regular file at `path` (refusing FIFOs, devices, directories) and parses it. */
  static Document read_file(const std::string& path);

  Document(Document&&) noexcept;
  Document& operator=(Document&&) noexcept;
  ~Document();

  Value root() const;
  const std::string& where() const { return where_; }

 private:
  struct Impl;
  Document(std::unique_ptr<Impl> impl, std::string where);
  std::unique_ptr<Impl> impl_;
  std::string where_;
};

/** Reads a whole regular file (a symlink to one is fine); anything else is refused without blocking. */
std::string read_regular_file(const std::string& path);

/** Builds compact JSON text: the inverse direction, for the runtime's info strings. */
class Writer {
 public:
  Writer& begin_object();
  Writer& end_object();
  Writer& begin_array();
  Writer& end_array();
  Writer& key(std::string_view k);
  Writer& value(std::string_view s);
  Writer& value(const char* s) { return value(std::string_view(s)); }
  Writer& value(bool b);
  Writer& value(int64_t i);
  Writer& value(int i) { return value(int64_t(i)); }
  Writer& value(size_t u);
  Writer& value(double d);  // shortest text that reads back as d, always with '.' or 'e'; non-finite as null
  const std::string& str() const { return out_; }

 private:
  void separate();
  std::string out_;
  std::vector<bool> first_;  // per open container: no member written yet
  bool after_key_ = false;
};

}  // namespace md::json
