#pragma once

// The guest's side of the network namespace every vm sandbox has, and waiting for its agent.
// Every guest has the same addresses: each is alone in its own namespace (net/guest_link.h).

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "kilnd/runtime/vm/child_process.h"

namespace kiln::kilnd::vm {

inline constexpr char kGuestAddress[] = "10.0.2.2";
inline constexpr char kGuestAddressCidr[] = "10.0.2.2/24";
inline constexpr char kGuestGateway[] = "10.0.2.1";
inline constexpr uint16_t kGuestAgentPort = 49983;

// Asks the guest's kiln-envd for GET /health from inside network namespace `netns_fd` until
// it answers 2xx. kUnavailable when the process behind `pidfd` (QEMU) exits first, kTimeout at
// `deadline` (quoting the last error).
Status WaitGuestAgent(int netns_fd, int pidfd, Clock::time_point deadline,
                      uint16_t port = kGuestAgentPort);

// The same for GET `path` on `port` in the guest.
Status WaitGuestHttp(int netns_fd, int pidfd, Clock::time_point deadline, uint16_t port,
                     const std::string& path);

// Starts `argv` in the guest as root through its agent (process.Process/Start, cwd /) and
// waits until GET `path` on `port` answers 2xx; the process goes on running. On failure the
// error quotes what the service printed.
Status StartGuestService(int netns_fd, int pidfd, const std::vector<std::string>& argv,
                         uint16_t port, const std::string& path, Clock::time_point deadline);

// Runs `argv` in the guest as root through its agent (cwd /) and waits for it to end. An
// error when it cannot start, does not end by `deadline` or ends other than with status 0
// (quoting its output).
Status RunGuestCommand(int netns_fd, const std::vector<std::string>& argv,
                       Clock::time_point deadline);

}  // namespace kiln::kilnd::vm
