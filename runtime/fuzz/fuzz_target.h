// The shape every fuzz target shares: the parser under test runs on the input, and a md::Error (the
// parsers' one way of refusing input, with a one-line message) is a correct outcome. Anything else escaping
// — another exception type, a crash, a sanitizer report, a leak, a hang — is a bug libFuzzer reports.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "error.h"

namespace md::fuzz {

template <class Parse>
int run_one(const uint8_t* data, size_t size, Parse parse) {
  try {
    parse(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const md::Error& e) {
    // Refused with a message: a message that is empty or spans lines would be a bug of its own.
    const std::string what = e.what();
    if (what.empty() || what.find('\n') != std::string::npos) __builtin_trap();
  }
  return 0;
}

}  // namespace md::fuzz
