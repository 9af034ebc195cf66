#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln::sys {

struct UserInfo {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
  std::string shell;
  // Supplementary groups, including the primary group.
  std::vector<gid_t> groups;
};

// Reads users and groups from <root>/etc/passwd and <root>/etc/group directly (no NSS, so it
// works in a static binary). Not cached: account files may change while the agent runs.
class UserDb {
 public:
  UserDb() = default;
  // `root` is the directory that holds etc/passwd, with or without a trailing slash.
  explicit UserDb(std::string root) : root_(std::move(root)) {
    if (root_.empty() || root_.back() != '/') root_ += '/';
  }

  // kNotFound for an unknown user.
  Result<UserInfo> Lookup(std::string_view name) const;
  // Name of a uid or gid; the number as text when there is none.
  std::string UserName(uid_t uid) const;
  std::string GroupName(gid_t gid) const;

 private:
  std::string root_ = "/";
};

}  // namespace kiln::sys
