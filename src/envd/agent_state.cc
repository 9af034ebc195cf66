#include "envd/agent_state.h"

#include <vector>

#include "http/auth.h"

namespace kiln::envd {

std::string NormalizePath(std::string_view absolute) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < absolute.size()) {
    size_t j = absolute.find('/', i);
    if (j == std::string_view::npos) j = absolute.size();
    std::string_view part = absolute.substr(i, j - i);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = j + 1;
  }
  std::string out;
  for (std::string_view p : parts) {
    out += '/';
    out += p;
  }
  return out.empty() ? "/" : out;
}

Result<sys::UserInfo> AgentState::UserByName(std::string_view name) const {
  std::string_view who = name.empty() ? std::string_view(default_user) : name;
  auto user = users.Lookup(who);
  if (!user) {
    return Fail(Errc::kUnauthenticated, "invalid user: '" + std::string(who) + "'");
  }
  return user;
}

Result<sys::UserInfo> AgentState::UserForRequest(const http::RequestHead& head) const {
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> name,
                        http::ParseBasicAuthUser(head.Header("authorization")));
  return UserByName(name ? *name : std::string());
}

std::string AgentState::ResolvePath(std::string_view path, const sys::UserInfo& user) const {
  std::string full;
  if (path.empty()) {
    full = default_workdir.empty() ? user.home : default_workdir;
  } else if (path == "~") {
    full = user.home;
  } else if (path.starts_with("~/")) {
    full = user.home + "/" + std::string(path.substr(2));
  } else if (path.front() == '/') {
    full = std::string(path);
  } else {
    full = user.home + "/" + std::string(path);
  }
  return NormalizePath(full);
}

}  // namespace kiln::envd
