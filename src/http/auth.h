#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln::http {

// SECURITY: the header is client-controlled. Parses "Basic base64(user:password)" and returns
// the user name; nullopt when the header is empty. kInvalidArgument/kUnauthenticated on a
// malformed value.
Result<std::optional<std::string>> ParseBasicAuthUser(std::string_view header);

}  // namespace kiln::http
