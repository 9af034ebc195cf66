#pragma once

// Where kilnd is: the --api-url / E2B_API_URL base URL, split for the HTTP client. kilnd
// serves the control API and the sandbox proxy on this one origin.

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln::cli {

inline constexpr std::string_view kDefaultApiUrl = "http://127.0.0.1:3000";

struct Endpoint {
  std::string url;          // as given, for messages
  std::string host;         // name or address to connect to ("::1" without brackets)
  uint16_t port = 80;
  std::string host_header;  // "127.0.0.1:3000", "[::1]:3000"
  std::string base_path;    // "" or "/prefix" (no trailing slash)

  // base_path + path; `path` starts with '/'.
  std::string Target(std::string_view path) const { return base_path + std::string(path); }
};

// Accepts http://host[:port][/prefix]. kInvalidArgument for anything else; https is refused
// with a hint (the CLI speaks plain HTTP to a local kilnd).
Result<Endpoint> ParseEndpoint(std::string_view url);

}  // namespace kiln::cli
