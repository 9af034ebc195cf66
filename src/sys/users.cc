#include "sys/users.h"

#include <charconv>
#include <fstream>

namespace kiln::sys {
namespace {

std::vector<std::string_view> SplitColon(std::string_view line) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    size_t c = line.find(':', start);
    parts.push_back(line.substr(start, c == std::string_view::npos ? line.npos : c - start));
    if (c == std::string_view::npos) break;
    start = c + 1;
  }
  return parts;
}

bool ParseId(std::string_view s, uint32_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

// Calls fn(fields) for each well-formed line of an account file until fn returns true.
template <typename Fn>
bool ForEachLine(const std::string& path, size_t min_fields, Fn fn) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto f = SplitColon(line);
    if (f.size() < min_fields) continue;
    if (fn(f)) return true;
  }
  return false;
}

}  // namespace

Result<UserInfo> UserDb::Lookup(std::string_view name) const {
  if (name.empty()) return Fail(Errc::kInvalidArgument, "empty user name");
  UserInfo user;
  bool found = ForEachLine(root_ + "etc/passwd", 7, [&](const auto& f) {
    uint32_t uid, gid;
    if (f[0] != name || !ParseId(f[2], uid) || !ParseId(f[3], gid)) return false;
    user.name = std::string(f[0]);
    user.uid = uid;
    user.gid = gid;
    user.home = std::string(f[5]);
    user.shell = std::string(f[6]);
    return true;
  });
  if (!found) return Fail(Errc::kNotFound, "user '" + std::string(name) + "' not found");
  user.groups.push_back(user.gid);
  ForEachLine(root_ + "etc/group", 4, [&](const auto& f) {
    uint32_t gid;
    if (!ParseId(f[2], gid) || gid == user.gid) return false;
    std::string_view members = f[3];
    while (!members.empty()) {
      size_t comma = members.find(',');
      if (members.substr(0, comma) == name) {
        user.groups.push_back(gid);
        break;
      }
      members = comma == std::string_view::npos ? std::string_view() : members.substr(comma + 1);
    }
    return false;
  });
  if (user.home.empty()) user.home = "/";
  return user;
}

std::string UserDb::UserName(uid_t uid) const {
  std::string out = std::to_string(uid);
  ForEachLine(root_ + "etc/passwd", 3, [&](const auto& f) {
    uint32_t id;
    if (ParseId(f[2], id) && id == uid) {
      out = std::string(f[0]);
      return true;
    }
    return false;
  });
  return out;
}

std::string UserDb::GroupName(gid_t gid) const {
  std::string out = std::to_string(gid);
  ForEachLine(root_ + "etc/group", 3, [&](const auto& f) {
    uint32_t id;
    if (ParseId(f[2], id) && id == gid) {
      out = std::string(f[0]);
      return true;
    }
    return false;
  });
  return out;
}

}  // namespace kiln::sys
