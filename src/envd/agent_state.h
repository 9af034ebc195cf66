#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "http/server.h"
#include "sys/users.h"

namespace kiln::envd {

// The envd version this agent is wire-compatible with; reported wherever a version is.
inline constexpr std::string_view kEnvdVersion = "0.6.13";

// Settings the control plane gives the agent through POST /init, shared by every service.
// Not thread-safe: read and written only on the agent's io_context thread.
struct AgentState {
  // Global environment for every process, from /init envVars (and the agent's own start).
  std::map<std::string, std::string> env_vars;
  // When set, every route but the exempt ones requires X-Access-Token.
  std::optional<std::string> access_token;
  // User for requests that name none; "root" until /init says otherwise.
  std::string default_user = "root";
  // Working directory for processes and paths that name none; the user's home when empty.
  std::string default_workdir;
  sys::UserDb users;

  // The user a request acts as: Basic auth user, else the default user.
  // kUnauthenticated when the named user does not exist or the header is malformed.
  Result<sys::UserInfo> UserForRequest(const http::RequestHead& head) const;
  // The named user, or the default user when `name` is empty.
  Result<sys::UserInfo> UserByName(std::string_view name) const;

  // Resolves a client path for `user`: empty -> default workdir (else home), "~" and "~/x"
  // -> home, relative -> under home; then lexically normalized ("a/../b" -> "b").
  std::string ResolvePath(std::string_view path, const sys::UserInfo& user) const;
};

// Lexical normalization of an absolute path: collapses "//", "." and "..".
std::string NormalizePath(std::string_view absolute);

}  // namespace kiln::envd
