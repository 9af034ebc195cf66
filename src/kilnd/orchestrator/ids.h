#pragma once

#include <string>
#include <string_view>

namespace kiln::kilnd {

// "i" followed by 19 random characters of [a-z0-9]: valid in a DNS label and free of '-'
// (the proxy splits "<port>-<id>" on it), like upstream ids.
std::string NewSandboxId();
// 32 random bytes as lowercase hex.
std::string NewToken();
// An API key in the format the E2B SDKs accept: "e2b_" + 40 hex characters.
std::string NewApiKey();
// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);
// True for [a-z0-9]{1,64}.
bool IsValidSandboxId(std::string_view id);

}  // namespace kiln::kilnd
