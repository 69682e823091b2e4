// The runtime's one exception type. It never crosses the C API or the Node binding: both catch it and turn
// it into an error string. Messages name the file / tensor / field and what is wrong.
#pragma once
#include <stdexcept>
#include <string>

namespace md {

struct Error : std::runtime_error {
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace md
