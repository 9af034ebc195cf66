#pragma once

// The `sudo` program of a sandbox: kiln-envd started under the name "sudo" (the template's
// /usr/local/bin/sudo links to the agent) asks the agent's SudoServer to run the command and
// waits for its exit status.

#include <string>
#include <vector>

#include "envd/sudo/sudo_options.h"
#include "envd/sudo/sudo_protocol.h"

namespace kiln::envd::sudo {

struct SudoClientConfig {
  std::string socket_path = kDefaultSocketPath;
  // Shown by -V.
  std::string agent_version;
};

// The request for parsed options and the caller's context: `invoker_env` is the whole invoking
// environment ("NAME=value"), reduced here to what sudo keeps (FilterInvokerEnv); `cwd` the
// working directory ("" if unknown); `shell` the invoking $SHELL.
SudoRequest BuildRequest(const SudoOptions& opts, const std::vector<std::string>& invoker_env,
                         std::string cwd, std::string shell);

// The whole program: `args` without argv[0]. Writes sudo's messages to stderr and returns the
// exit status: the command's, 128 + N when it was killed by signal N, 1 for sudo's own errors
// (usage, refused, command not found, the agent unreachable). While the command runs, SIGINT,
// SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR1 and SIGUSR2 sent to this process are forwarded
// to the command's process group. The standard descriptors are passed to the command as they
// are.
int RunSudoClient(const std::vector<std::string>& args, const SudoClientConfig& config);

}  // namespace kiln::envd::sudo
