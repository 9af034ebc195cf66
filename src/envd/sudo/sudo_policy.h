#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "base/error.h"
#include "sys/users.h"

namespace kiln::envd::sudo {

// The group whose members may use sudo, as in Debian's sudoers (%sudo ALL=(ALL:ALL) ALL).
inline constexpr char kSudoGroup[] = "sudo";

// SECURITY: the sandbox's one sudo rule, the template's promise: root and the members of
// group `sudo` may run any command as any user, without a password; nobody else may run
// anything. Membership is read from <root>/etc/passwd and etc/group on every call (the files
// are small and may change while the agent runs; root owns them, so only root can change the
// rule). Stateless; any thread.
class SudoPolicy {
 public:
  explicit SudoPolicy(std::string root = "/");

  // The invoking user for a peer uid (from SO_PEERCRED, never from the request).
  // Errors carry sudo's words: kPermissionDenied "bob is not in the sudoers file." for a user
  // outside the group, kNotFound "you do not exist in the passwd database" for a uid without
  // an entry.
  Result<sys::UserInfo> Authorize(uid_t uid) const;

  // The identity a command runs as: -u USER or #UID (root by default; the invoking user
  // when only -g is given), with -g GROUP or #GID as its primary group. kNotFound
  // "unknown user x" / "unknown group x".
  Result<sys::UserInfo> ResolveTarget(const std::optional<std::string>& user,
                                      const std::optional<std::string>& group,
                                      const sys::UserInfo& invoker) const;

 private:
  Result<sys::UserInfo> LookupUser(std::string_view spec) const;
  Result<gid_t> LookupGroup(std::string_view spec) const;
  bool InSudoGroup(const sys::UserInfo& user) const;

  std::string root_;
  sys::UserDb users_;
};

}  // namespace kiln::envd::sudo
