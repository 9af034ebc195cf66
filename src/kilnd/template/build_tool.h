#pragma once

// Runs one build tool of a template build (debootstrap, apt-get in a chroot) as a child
// process: execve with an explicit argv (no shell), a new process group that is killed as a
// whole when the tool ends or the build gives up, output handed over line by line.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "sys/spawn.h"

namespace kiln::kilnd::tmpl {

// The environment of build tools: PATH, HOME=/root, LC_ALL=C, DEBIAN_FRONTEND=noninteractive,
// and the host's proxy variables, if any.
std::vector<std::string> BuildToolEnv();

// Runs `spec` (its stdio fields are replaced: stdin /dev/null, stdout and stderr one pipe) until
// it exits or `timeout` passes, then kills whatever is left in its process group. `on_started`
// gets the pid once it runs, `on_line` each output line (no newline). Errors name the tool by
// `name`: kTimeout, or kInternal quoting the last lines on a non-zero exit.
Status RunBuildTool(sys::SpawnSpec spec, std::string_view name, std::chrono::seconds timeout,
                    const std::function<void(pid_t)>& on_started,
                    const std::function<void(std::string_view)>& on_line);

}  // namespace kiln::kilnd::tmpl
