#include "kilnd/runtime/vm/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace kiln::kilnd::vm {
namespace {

constexpr size_t kMaxToolStdout = 64u << 20;
constexpr size_t kKeptStderr = 64u << 10;

int MillisUntil(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<long long>(left.count(), 0, 60000));
}

// Appends what `fd` has now; false at EOF or on an error other than EAGAIN.
bool DrainInto(int fd, std::string& out) {
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;
  }
}

std::vector<std::string> ToolEnv() {
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

Result<UniqueFd> NonBlockingPipe(UniqueFd& write_end) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return FailErrno("pipe2");
  UniqueFd r(p[0]);
  write_end.reset(p[1]);
  if (fcntl(r.get(), F_SETFL, O_NONBLOCK) < 0) return FailErrno("fcntl O_NONBLOCK");
  return r;
}

std::string LastLines(std::string_view text, size_t max_chars) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text.size() > max_chars) text = text.substr(text.size() - max_chars);
  std::string out(text);
  std::replace(out.begin(), out.end(), '\n', '|');
  return out;
}

}  // namespace

ChildProcess::ChildProcess(ChildProcess&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), pidfd_(std::move(o.pidfd_)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
  if (this != &o) {
    Kill();
    pid_ = std::exchange(o.pid_, -1);
    pidfd_ = std::move(o.pidfd_);
  }
  return *this;
}

Result<ChildProcess> ChildProcess::Start(const sys::SpawnSpec& spec) {
  Result<pid_t> spawned = [&spec] {
    if (!spec.cwd.empty()) return sys::Spawn(spec);
    sys::SpawnSpec in_root = spec;
    in_root.cwd = "/";
    return sys::Spawn(in_root);
  }();
  KILN_ASSIGN_OR_RETURN(pid_t pid, std::move(spawned));
  ChildProcess child;
  child.pid_ = pid;
  child.pidfd_.reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!child.pidfd_) return FailErrno("pidfd_open " + spec.path);  // the destructor kills it
  return child;
}

Result<int> ChildProcess::Wait(Clock::time_point deadline) {
  if (pid_ <= 0) return Fail(Errc::kFailedPrecondition, "no child to wait for");
  for (;;) {
    pollfd p{pidfd_.get(), POLLIN, 0};
    int n = poll(&p, 1, MillisUntil(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("poll pidfd");
    if (n > 0) break;
    if (Clock::now() >= deadline) return Fail(Errc::kTimeout, "child did not exit in time");
  }
  kill(-pid_, SIGKILL);  // what the leader left behind; its pid is still ours until reaped
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  pidfd_.reset();
  return status;
}

void ChildProcess::Kill() {
  if (pid_ <= 0) return;
  kill(-pid_, SIGKILL);
  kill(pid_, SIGKILL);  // in case it moved itself to another group
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  pidfd_.reset();
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

Result<std::string> FindTool(const std::string& name) {
  return sys::FindExecutable(name, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
}

Result<ToolOutput> RunTool(const std::vector<std::string>& argv, const std::string& cwd,
                           std::chrono::seconds timeout) {
  if (argv.empty()) return Fail(Errc::kInvalidArgument, "RunTool: empty argv");
  UniqueFd out_w, err_w;
  KILN_ASSIGN_OR_RETURN(UniqueFd out_r, NonBlockingPipe(out_w));
  KILN_ASSIGN_OR_RETURN(UniqueFd err_r, NonBlockingPipe(err_w));
  sys::SpawnSpec spec;
  spec.path = argv[0];
  spec.argv = argv;
  spec.env = ToolEnv();
  spec.cwd = cwd;
  spec.stdout_fd = out_w.get();
  spec.stderr_fd = err_w.get();
  KILN_ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::Start(spec));
  out_w.reset();
  err_w.reset();

  const std::string& name = argv[0];
  Clock::time_point deadline = Clock::now() + timeout;
  ToolOutput result;
  bool out_open = true, err_open = true;
  for (;;) {
    pollfd fds[3] = {{child.pidfd(), POLLIN, 0},
                     {out_open ? out_r.get() : -1, POLLIN, 0},
                     {err_open ? err_r.get() : -1, POLLIN, 0}};
    int n = poll(fds, 3, MillisUntil(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("poll " + name);
    if (n == 0 && Clock::now() >= deadline) {
      return Fail(Errc::kTimeout,
                  name + " did not finish within " + std::to_string(timeout.count()) + " s");
    }
    if (fds[1].revents != 0) out_open = DrainInto(out_r.get(), result.out);
    if (fds[2].revents != 0) err_open = DrainInto(err_r.get(), result.err);
    if (result.out.size() > kMaxToolStdout) {
      return Fail(Errc::kResourceExhausted, name + " printed more than 64 MiB");
    }
    if (result.err.size() > 2 * kKeptStderr) result.err.erase(0, result.err.size() - kKeptStderr);
    if (fds[0].revents != 0) {
      if (out_open) DrainInto(out_r.get(), result.out);
      if (err_open) DrainInto(err_r.get(), result.err);
      break;
    }
  }
  KILN_ASSIGN_OR_RETURN(int status, child.Wait(deadline + std::chrono::seconds(5)));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return result;
  return Fail(Errc::kInternal,
              name + " " + DescribeWaitStatus(status) + ": " + LastLines(result.err, 600));
}

Result<std::string> ReadUntilImpl(int fd, int pidfd, Clock::time_point deadline,
                                  bool (*done)(const std::string&, const void*), const void* ctx) {
  std::string text;
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    int n = poll(fds, 2, MillisUntil(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("poll");
    bool open = true;
    if (fds[0].revents != 0) open = DrainInto(fd, text);
    if (done(text, ctx)) return text;
    if (!open || fds[1].revents != 0) {
      if (open) DrainInto(fd, text);
      if (done(text, ctx)) return text;
      return Unexpected(Error(Errc::kUnavailable, "process exited before the expected output: " +
                                                      LastLines(text, 2000)));
    }
    if (n == 0 && Clock::now() >= deadline) {
      return Unexpected(
          Error(Errc::kTimeout, "expected output did not come in time: " + LastLines(text, 2000)));
    }
  }
}

}  // namespace kiln::kilnd::vm
