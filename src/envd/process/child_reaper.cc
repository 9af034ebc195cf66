#include "envd/process/child_reaper.h"

#include <signal.h>
#include <sys/wait.h>

#include <cerrno>

namespace kiln::envd {

ChildReaper::ChildReaper(boost::asio::io_context& io, ExitFn on_exit)
    : sigchld_(io, SIGCHLD), on_exit_(std::move(on_exit)) {
  // Asio installs its handler without SA_RESTART, so every exiting child would fail the
  // agent's blocking syscalls with EINTR. Keep its handler, add SA_RESTART, and skip the
  // signals for stopped/continued children (waitpid below does not report them anyway).
  struct sigaction sa {};
  if (sigaction(SIGCHLD, nullptr, &sa) == 0) {
    sa.sa_flags |= SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, nullptr);
  }
  Arm();
  // Children that exited before the handler was installed sent their SIGCHLD to nobody.
  ReapNow();
}

void ChildReaper::Arm() {
  sigchld_.async_wait([this](const boost::system::error_code& ec, int) {
    // operation_aborted: the reaper is being destroyed; `this` must not be touched.
    if (ec) return;
    ReapNow();
    Arm();
  });
}

void ChildReaper::ReapNow() {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    // 0: children remain but none has exited; -1: ECHILD, there are none at all.
    if (pid <= 0) return;
    if (auto it = watched_.find(pid); it != watched_.end()) {
      ExitFn fn = std::move(it->second);
      watched_.erase(it);
      fn(pid, status);
      continue;
    }
    on_exit_(pid, status);
  }
}

void ChildReaper::Watch(pid_t pid, ExitFn fn) { watched_[pid] = std::move(fn); }

void ChildReaper::Unwatch(pid_t pid) { watched_.erase(pid); }

}  // namespace kiln::envd
