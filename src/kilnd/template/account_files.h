#pragma once

// Adds a user to a rootfs by editing its account files directly (no useradd, no chroot):
// etc/passwd, etc/group, etc/shadow and etc/gshadow, in their exact formats.

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/error.h"
#include "kilnd/template/rootfs_tree.h"

namespace kiln::kilnd::tmpl {

struct NewUser {
  std::string name;
  uid_t uid = 1000;
  gid_t gid = 1000;  // a group of the same name is created with this gid
  std::string home;
  std::string shell = "/bin/bash";
  // Existing groups the user joins (e.g. "sudo").
  std::vector<std::string> groups;
  // Day of the last password change for etc/shadow (days since 1970-01-01).
  long last_change_day = 0;
};

// Appends `user` and its primary group to the account files of `tree`, with a locked password
// ("!"), and adds the user to the member lists of `user.groups` in etc/group and etc/gshadow.
// Each file is replaced atomically and keeps its mode and owner. etc/shadow and etc/gshadow
// are updated only if they exist. kAlreadyExists if the name, uid or gid is taken; kNotFound
// if one of `user.groups` does not exist. Does not create the home directory.
Status AddUser(const RootfsTree& tree, const NewUser& user);

// Helpers exposed for tests. Fields of an account-file line split at ':'.
std::vector<std::string> SplitAccountLine(const std::string& line);
// `line` (a group or gshadow line) with `user` appended to its member list (the 4th field),
// unchanged if already a member.
std::string AddGroupMember(const std::string& line, const std::string& user);

}  // namespace kiln::kilnd::tmpl
