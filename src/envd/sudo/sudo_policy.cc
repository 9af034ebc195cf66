#include "envd/sudo/sudo_policy.h"

#include <algorithm>
#include <charconv>
#include <fstream>

namespace kiln::envd::sudo {
namespace {

std::optional<uint32_t> ParseId(std::string_view s) {
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// The "#1000" form sudo accepts for -u and -g.
std::optional<uint32_t> NumericSpec(std::string_view spec) {
  if (!spec.starts_with('#')) return std::nullopt;
  return ParseId(spec.substr(1));
}

}  // namespace

SudoPolicy::SudoPolicy(std::string root) : root_(std::move(root)), users_(root_) {
  if (root_.empty() || root_.back() != '/') root_ += '/';
}

Result<sys::UserInfo> SudoPolicy::Authorize(uid_t uid) const {
  std::string name = users_.UserName(uid);
  auto user = users_.Lookup(name);
  if (!user || user->uid != uid) {
    if (uid == 0) {
      // Root may always; a rootfs without a root entry still gets a usable identity.
      sys::UserInfo root;
      root.name = "root";
      root.home = "/root";
      root.shell = "/bin/sh";
      root.groups = {0};
      return root;
    }
    return Fail(Errc::kNotFound, "you do not exist in the passwd database");
  }
  if (uid != 0 && !InSudoGroup(*user)) {
    return Fail(Errc::kPermissionDenied, user->name + " is not in the sudoers file.");
  }
  return user;
}

bool SudoPolicy::InSudoGroup(const sys::UserInfo& user) const {
  return std::ranges::any_of(user.groups,
                             [&](gid_t g) { return users_.GroupName(g) == kSudoGroup; });
}

Result<sys::UserInfo> SudoPolicy::ResolveTarget(const std::optional<std::string>& user,
                                                const std::optional<std::string>& group,
                                                const sys::UserInfo& invoker) const {
  sys::UserInfo target;
  if (user) {
    KILN_ASSIGN_OR_RETURN(target, LookupUser(*user));
  } else if (group) {
    target = invoker;
  } else {
    KILN_ASSIGN_OR_RETURN(target, LookupUser("root"));
  }
  if (group) {
    KILN_ASSIGN_OR_RETURN(gid_t gid, LookupGroup(*group));
    target.gid = gid;
    if (std::ranges::find(target.groups, gid) == target.groups.end()) {
      target.groups.insert(target.groups.begin(), gid);
    }
  }
  return target;
}

Result<sys::UserInfo> SudoPolicy::LookupUser(std::string_view spec) const {
  std::string name(spec);
  if (auto uid = NumericSpec(spec)) name = users_.UserName(*uid);
  auto user = users_.Lookup(name);
  if (!user && name == "root") return Authorize(0);
  if (!user) return Fail(Errc::kNotFound, "unknown user " + std::string(spec));
  return user;
}

Result<gid_t> SudoPolicy::LookupGroup(std::string_view spec) const {
  if (auto gid = NumericSpec(spec)) {
    if (users_.GroupName(*gid) != std::to_string(*gid)) return *gid;
    return Fail(Errc::kNotFound, "unknown group " + std::string(spec));
  }
  std::ifstream in(root_ + "etc/group");
  std::string line;
  while (std::getline(in, line)) {
    // name:password:gid:members
    size_t c1 = line.find(':');
    if (c1 == std::string::npos || std::string_view(line).substr(0, c1) != spec) continue;
    size_t c2 = line.find(':', c1 + 1);
    if (c2 == std::string::npos) continue;
    size_t c3 = line.find(':', c2 + 1);
    std::string_view id = std::string_view(line).substr(
        c2 + 1, c3 == std::string::npos ? std::string_view::npos : c3 - c2 - 1);
    if (auto gid = ParseId(id)) return *gid;
  }
  return Fail(Errc::kNotFound, "unknown group " + std::string(spec));
}

}  // namespace kiln::envd::sudo
