#pragma once

// Host processes the vm runtime starts: build tools (apt-get, dpkg-deb, mke2fs) and QEMU.
// Each is execve'd with an explicit argv (never a shell) as the leader of a new process group
// and owned by a ChildProcess, whose destructor kills the group and reaps the leader.

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "sys/spawn.h"

namespace kiln::kilnd::vm {

using Clock = std::chrono::steady_clock;

// A running child and its pidfd. Move-only. Until Wait() has reaped it, destruction sends
// SIGKILL to its whole process group and reaps the leader, so nothing outlives its owner.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(ChildProcess&& o) noexcept;
  ChildProcess& operator=(ChildProcess&& o) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { Kill(); }

  // Spawns `spec` (sys::Spawn: new process group; an empty cwd means /) and opens its pidfd.
  static Result<ChildProcess> Start(const sys::SpawnSpec& spec);

  pid_t pid() const { return pid_; }
  // Readable once the leader has exited.
  int pidfd() const { return pidfd_.get(); }
  bool running() const { return pid_ > 0; }

  // Waits until the leader exits or `deadline` passes (kTimeout; the child keeps running).
  // Returns the wait status and kills whatever is left in the group.
  Result<int> Wait(Clock::time_point deadline);
  // SIGKILL to the group, then reap (idempotent).
  void Kill();

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
};

// "exited with status 3" / "killed by signal 9".
std::string DescribeWaitStatus(int status);

struct ToolOutput {
  std::string out;  // standard output
  std::string err;  // standard error (the last 64 KiB)
};

// Runs a build tool to completion: argv[0] is an absolute path, `cwd` may be empty, stdin is
// /dev/null and the environment is PATH, LC_ALL=C, DEBIAN_FRONTEND=noninteractive plus the
// host's proxy variables. kTimeout after `timeout` (the tool is killed); kInternal quoting
// stderr's last line(s) on a non-zero exit. Standard output beyond 64 MiB is an error.
Result<ToolOutput> RunTool(const std::vector<std::string>& argv, const std::string& cwd,
                           std::chrono::seconds timeout);

// Resolves a tool name against the usual system directories (/usr/sbin:/usr/bin:/sbin:/bin).
Result<std::string> FindTool(const std::string& name);

// Reads from `fd` (non-blocking) until `pidfd` (may be -1) becomes readable, `done` returns
// true for the text read so far, or `deadline` passes. Returns everything read. kTimeout at
// the deadline; kUnavailable if the process exited (or the pipe closed) before `done`.
template <typename Pred>
Result<std::string> ReadUntil(int fd, int pidfd, Clock::time_point deadline, Pred done);

// Non-template core of ReadUntil: `done` is called after every chunk.
Result<std::string> ReadUntilImpl(int fd, int pidfd, Clock::time_point deadline,
                                  bool (*done)(const std::string&, const void*), const void* ctx);

template <typename Pred>
Result<std::string> ReadUntil(int fd, int pidfd, Clock::time_point deadline, Pred done) {
  return ReadUntilImpl(
      fd, pidfd, deadline,
      [](const std::string& text, const void* ctx) {
        return (*static_cast<const Pred*>(ctx))(text);
      },
      &done);
}

}  // namespace kiln::kilnd::vm
