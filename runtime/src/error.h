// The runtime's one exception type. It never crosses the C API or the Node binding: both catch it and turn
// it into an error string. Messages name the file / tensor / field and what is wrong.
//
// A message is always one line: it often quotes what a file holds (a tensor name, a JSON key, a dtype
// string), and a hostile file can put a newline or a terminal escape there. The constructor writes every
// control character as an escape (\n, \t, \x1b), so no caller has to remember to.
#pragma once
#include <stdexcept>
#include <string>

namespace md {

/** `text` with control characters (below 0x20, and 0x7f) written as \n, \r, \t or \xHH. */
inline std::string one_line(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  static const char hex[] = "0123456789abcdef";
  for (unsigned char c : text) {
    if (c >= 0x20 && c != 0x7f) {
      out += char(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

struct Error : std::runtime_error {
  explicit Error(const std::string& what) : std::runtime_error(one_line(what)) {}
};

}  // namespace md
