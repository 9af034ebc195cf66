#pragma once

// What an authorised sudo request runs: program, argv, environment, directory and identity.

#include <string>
#include <vector>

#include "base/error.h"
#include "envd/sudo/sudo_protocol.h"
#include "sys/spawn.h"
#include "sys/users.h"

namespace kiln::envd::sudo {

// The invoking side of a request: the user the policy authorised and the peer's gid.
struct Invoker {
  sys::UserInfo user;
  gid_t gid = 0;
};

struct SudoCommand {
  // Everything but the descriptors.
  sys::SpawnSpec spawn;
  // Where the command runs when the target cannot enter spawn.cwd (sudo would refuse; a
  // sandbox user is better served by the target's home, else "/").
  std::vector<std::string> fallback_cwds;
};

// sudo's quoting of a command for `shell -c` with -i / -s: every byte that is not a letter,
// digit, '_', '-' or '$' gets a backslash; arguments are joined with spaces.
std::string ShellEscapeCommand(const std::vector<std::string>& argv);

// Plans the command of `req` for `target`. A plain command is looked up in secure_path;
// -s runs the invoking $SHELL (else the invoker's login shell), -i the target's login shell as
// a login shell ("-bash") in the target's home; with a command they get "-c <escaped>".
// kNotFound "<cmd>: command not found".
Result<SudoCommand> PlanSudoCommand(const SudoRequest& req, const Invoker& invoker,
                                    const sys::UserInfo& target);

// sudo -l: the rule for the invoker, or with a command the command's full path and arguments.
// kNotFound when the command does not exist.
Result<std::string> ListOutput(const SudoRequest& req, const sys::UserInfo& invoker,
                               std::string_view hostname);

}  // namespace kiln::envd::sudo
