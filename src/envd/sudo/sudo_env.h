#pragma once

// The environment of a sudo command, following sudo's env_reset defaults: the invoking
// environment is dropped except for a few harmless variables (terminal, locale, display),
// PATH becomes secure_path, and HOME, USER, LOGNAME, SHELL, MAIL and SUDO_* describe the
// target and the invoking user.

#include <string>
#include <string_view>
#include <vector>

#include "sys/users.h"

namespace kiln::envd::sudo {

// sudo's secure_path in Debian's sudoers.
inline constexpr char kSecurePath[] =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The invoking environment ("NAME=value" entries) reduced to what the command may see:
// everything with `preserve_all` (-E); otherwise the variables sudo keeps by default
// (COLORS, DISPLAY, HOSTNAME, KRB5CCNAME, LS_COLORS, PS1, PS2, XAUTHORITY, XAUTHORIZATION,
// XDG_CURRENT_DESKTOP), the ones it keeps when their value is safe (COLORTERM, LANG,
// LANGUAGE, LC_*, LINGUAS, TERM, TZ: no '%', no '/' except in TZ, no ".." in TZ) and
// `preserve_names`. Entries without a '=' are dropped; order is kept.
std::vector<std::string> FilterInvokerEnv(const std::vector<std::string>& env, bool preserve_all,
                                          const std::vector<std::string>& preserve_names);

// Who runs what, for the variables sudo sets.
struct CommandEnvInputs {
  // The filtered invoking environment (FilterInvokerEnv) and the command line's VAR=value.
  std::vector<std::string> invoker_env;
  std::vector<std::string> assignments;
  bool preserve_env = false;  // -E: HOME and SHELL of the invoker stay unless -H
  bool set_home = false;      // -H
  bool login = false;         // -i: only the filtered defaults survive, even with -E
  std::string invoker_name;
  uid_t invoker_uid = 0;
  gid_t invoker_gid = 0;
  // The command with its arguments as sudo shows it (SUDO_COMMAND), e.g. "/usr/bin/id -u".
  std::string command_line;
};

// The command's whole environment, sorted by name: the invoking variables, then PATH, HOME,
// SHELL, MAIL, USER, LOGNAME and SUDO_USER, SUDO_UID, SUDO_GID, SUDO_COMMAND, then the
// assignments (which override everything).
std::vector<std::string> BuildCommandEnv(const CommandEnvInputs& in, const sys::UserInfo& target);

}  // namespace kiln::envd::sudo
