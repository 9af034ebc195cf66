#include "kilnd/template/build_tool.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>

#include "base/unique_fd.h"

namespace kiln::kilnd::tmpl {
namespace {

constexpr size_t kTailLines = 12;

// A spawned process group leader. Until Reap() ran, the destructor kills the whole group and
// reaps the leader, so no builder outlives a failed or abandoned build.
class ChildGroup {
 public:
  explicit ChildGroup(pid_t pid) : pid_(pid) {}
  ChildGroup(const ChildGroup&) = delete;
  ChildGroup& operator=(const ChildGroup&) = delete;
  ~ChildGroup() {
    if (pid_ > 0) {
      KillGroup();
      Reap();
    }
  }

  pid_t pid() const { return pid_; }
  // While the leader is unreaped its pid cannot be reused, so the group id is still ours.
  void KillGroup() const { kill(-pid_, SIGKILL); }
  int Reap() {
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_;
};

// Splits what arrives on the output pipe into lines and keeps the last few for errors.
class LineSplitter {
 public:
  explicit LineSplitter(const std::function<void(std::string_view)>& on_line) : on_line_(on_line) {}

  void Add(std::string_view data) {
    partial_.append(data);
    size_t start = 0;
    for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
      Emit(std::string_view(partial_).substr(start, nl - start));
    }
    partial_.erase(0, start);
  }
  void Finish() {
    if (!partial_.empty()) Emit(partial_);
    partial_.clear();
  }
  std::string Tail() const {
    std::string out;
    for (const std::string& line : tail_) out.append(out.empty() ? "" : " | ").append(line);
    return out;
  }

 private:
  void Emit(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (on_line_) on_line_(line);
    tail_.emplace_back(line.substr(0, 300));
    if (tail_.size() > kTailLines) tail_.pop_front();
  }

  const std::function<void(std::string_view)>& on_line_;
  std::string partial_;
  std::deque<std::string> tail_;
};

// Reads `fd` until EAGAIN or EOF; false at EOF.
bool Drain(int fd, LineSplitter& lines) {
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      lines.Add(std::string_view(buf, static_cast<size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;  // EAGAIN: more may come later; EOF or error: done
  }
}

// Forwards output until the leader exits or the deadline passes (then false).
Result<bool> Pump(int out_fd, int pidfd, std::chrono::steady_clock::time_point deadline,
                  LineSplitter& lines) {
  bool pipe_open = true;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd fds[2] = {{pidfd, POLLIN, 0}, {pipe_open ? out_fd : -1, POLLIN, 0}};
    int n = poll(fds, 2, static_cast<int>(std::min<long long>(left.count(), 60000)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("poll build tool output");
    if (fds[1].revents != 0) pipe_open = Drain(out_fd, lines);
    if (fds[0].revents != 0) {
      // Exited: take what is left in the pipe, but do not wait for processes that inherited
      // it (they are killed next).
      if (pipe_open) Drain(out_fd, lines);
      return true;
    }
  }
}

}  // namespace

std::vector<std::string> BuildToolEnv() {
  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "HOME=/root",
      "LC_ALL=C",
      "DEBIAN_FRONTEND=noninteractive",
  };
  for (const char* name :
       {"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}) {
    if (const char* v = getenv(name)) env.push_back(std::string(name) + "=" + v);
  }
  return env;
}

Status RunBuildTool(sys::SpawnSpec spec, std::string_view name, std::chrono::seconds timeout,
                    const std::function<void(pid_t)>& on_started,
                    const std::function<void(std::string_view)>& on_line) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return FailErrno("pipe2");
  UniqueFd out_r(p[0]);
  UniqueFd out_w(p[1]);
  if (fcntl(out_r.get(), F_SETFL, O_NONBLOCK) < 0) return FailErrno("fcntl O_NONBLOCK");
  spec.stdin_fd = -1;
  spec.stdout_fd = out_w.get();
  spec.stderr_fd = out_w.get();
  KILN_ASSIGN_OR_RETURN(pid_t pid, sys::Spawn(spec));
  ChildGroup child(pid);
  out_w.reset();
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return FailErrno("pidfd_open " + std::string(name));
  if (on_started) on_started(pid);

  LineSplitter lines(on_line);
  KILN_ASSIGN_OR_RETURN(bool exited, Pump(out_r.get(), pidfd.get(),
                                          std::chrono::steady_clock::now() + timeout, lines));
  lines.Finish();
  if (!exited) {
    return Fail(Errc::kTimeout, std::string(name) + " did not finish within " +
                                    std::to_string(timeout.count()) + " s: " + lines.Tail());
  }
  child.KillGroup();  // whatever it left running
  int status = child.Reap();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  std::string how = WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                      : "killed by signal " + std::to_string(WTERMSIG(status));
  return Fail(Errc::kInternal, std::string(name) + " " + how + ": " + lines.Tail());
}

}  // namespace kiln::kilnd::tmpl
