#pragma once

// The `sudo` command line: the subset of sudo(8)'s options that means something in a sandbox
// where the one policy is "root and group sudo may run anything, without a password".

#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace kiln::envd::sudo {

enum class SudoAction {
  kRun,      // run `command` (or a shell with -i / -s)
  kList,     // -l: what the user may run
  kNoop,     // -v, -k, -K without a command: no timestamps here, nothing to do
  kVersion,  // -V
  kHelp,     // -h
};

struct SudoOptions {
  SudoAction action = SudoAction::kRun;
  std::optional<std::string> user;   // -u USER / #UID
  std::optional<std::string> group;  // -g GROUP / #GID
  bool preserve_env = false;         // -E, --preserve-env
  // --preserve-env=NAME,...: names kept in addition to sudo's defaults.
  std::vector<std::string> preserve_names;
  bool set_home = false;  // -H
  bool login = false;     // -i
  bool shell = false;     // -s
  // VAR=value arguments before the command.
  std::vector<std::string> assignments;
  std::vector<std::string> command;
};

// Parses sudo's arguments (without argv[0]) like sudo does: options end at the first
// non-option or "--"; short options may be bundled ("-Eu nobody", "-unobody"); long options
// take "=value" or the next argument. -n, -S, -A, -B, -P and -p PROMPT are accepted and
// ignored (no password is ever asked). kInvalidArgument with sudo's wording ("invalid option
// -- 'x'", "option requires an argument -- 'u'", "you may not specify both the -i and -s
// options") for anything else, including the options this sudo does not implement (-b, -e,
// -D, -R, -T, -C, -U, -r, -t).
Result<SudoOptions> ParseSudoArgs(const std::vector<std::string>& args);

// The usage text sudo prints on a command-line error (to stderr) and for -h (to stdout).
std::string SudoUsage();

}  // namespace kiln::envd::sudo
