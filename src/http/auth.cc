#include "http/auth.h"

#include "base/encoding.h"

namespace kiln::http {

Result<std::optional<std::string>> ParseBasicAuthUser(std::string_view header) {
  if (header.empty()) return std::optional<std::string>();
  constexpr std::string_view kPrefix = "basic ";
  if (header.size() < kPrefix.size()) {
    return Fail(Errc::kUnauthenticated, "malformed Authorization header");
  }
  for (size_t i = 0; i < kPrefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kPrefix[i]) {
      return Fail(Errc::kUnauthenticated, "Authorization header is not Basic");
    }
  }
  std::string_view b64 = header.substr(kPrefix.size());
  while (!b64.empty() && b64.front() == ' ') b64.remove_prefix(1);
  while (!b64.empty() && b64.back() == ' ') b64.remove_suffix(1);
  auto decoded = Base64Decode(b64);
  if (!decoded) return Fail(Errc::kUnauthenticated, "Authorization header is not valid base64");
  size_t colon = decoded->find(':');
  std::string user = decoded->substr(0, colon);
  if (user.empty()) return Fail(Errc::kUnauthenticated, "Authorization header names no user");
  return std::optional<std::string>(std::move(user));
}

}  // namespace kiln::http
