#pragma once

#include "base/error.h"
#include "envd/agent_state.h"
#include "sys/spawn.h"
#include "sys/users.h"
#include "wire/process.h"

namespace kiln::envd {

// PATH of every process unless the sandbox's or the call's env vars set another.
inline constexpr char kDefaultPath[] =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// Turns a Start request's process config into what the child runs as `user`: argv, the
// environment (PATH, HOME, USER, LOGNAME, then the sandbox's global vars, then the call's
// own `envs`; nothing of one call is kept for the next), the working directory (resolved like
// every client path; it must be an existing directory) and the identity. The descriptors and
// the session mode are left for the caller.
// Errors: kInvalidArgument for a missing cwd, a bad env name or NUL bytes; kInvalidArgument
// when the executable is not found in the effective PATH.
Result<sys::SpawnSpec> BuildSpawnSpec(const wire::ProcessConfig& config,
                                      const sys::UserInfo& user, const AgentState& state);

}  // namespace kiln::envd
