#pragma once

// Entry point of the `kiln` command-line client. main() wires it: it passes the arguments,
// the standard descriptors and the environment, plus the local commands that need kilnd's
// own libraries (which src/cli may not depend on).
//
// Exit statuses: 0 success; 1 a failed call ("kiln: <status>: <message>" on stderr) or an
// unreachable kilnd; 2 a usage error (message and usage on stderr); for `sandbox exec` and
// `sandbox shell`, the remote command's status (128+N for signal N, 124 for --timeout).

#include <functional>
#include <string>
#include <vector>

#include "cli/command_line.h"
#include "cli/io.h"

namespace kiln::cli {

struct LocalCommands {
  // `kiln keys create`: creates a key in kilnd's store and prints it.
  std::function<int(const KeysCreateCommand&, const Io&)> keys_create;
  // `kiln up`: builds the base template, then replaces the process with kilnd.
  std::function<int(const UpCommand&, const Io&)> up;
};

// Runs one command line (`args` without the program name) and returns the exit status.
// Blocks until the command is done; runs its own io_context on the calling thread.
int Run(const std::vector<std::string>& args, const Io& io, const Environment& env,
        const LocalCommands& local);

}  // namespace kiln::cli
