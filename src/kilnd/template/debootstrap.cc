#include "kilnd/template/debootstrap.h"

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
#include "sys/spawn.h"

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

std::vector<std::string> DebootstrapEnv() {
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
    if (n < 0) return FailErrno("poll debootstrap output");
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

std::vector<std::string> DebootstrapArgv(const DebootstrapArgs& args) {
  std::vector<std::string> argv = {args.executable, "--variant=" + args.variant};
  if (!args.packages.empty()) {
    std::string include = "--include=";
    for (size_t i = 0; i < args.packages.size(); ++i) {
      if (i > 0) include += ',';
      include += args.packages[i];
    }
    argv.push_back(std::move(include));
  }
  argv.push_back(args.suite);
  argv.push_back(args.target.string());
  argv.push_back(args.mirror);
  return argv;
}

Status RunDebootstrap(const DebootstrapArgs& args, const std::function<void(pid_t)>& on_started,
                      const std::function<void(std::string_view)>& on_line) {
  KILN_ASSIGN_OR_RETURN(std::string exe, sys::FindExecutable(args.executable, ""));
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return FailErrno("pipe2");
  UniqueFd out_r(p[0]);
  UniqueFd out_w(p[1]);
  if (fcntl(out_r.get(), F_SETFL, O_NONBLOCK) < 0) return FailErrno("fcntl O_NONBLOCK");
  sys::SpawnSpec spec;
  spec.path = exe;
  spec.argv = DebootstrapArgv(args);
  spec.env = DebootstrapEnv();
  spec.cwd = "/";
  spec.stdout_fd = out_w.get();
  spec.stderr_fd = out_w.get();
  KILN_ASSIGN_OR_RETURN(pid_t pid, sys::Spawn(spec));
  ChildGroup child(pid);
  out_w.reset();
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return FailErrno("pidfd_open debootstrap");
  if (on_started) on_started(pid);

  LineSplitter lines(on_line);
  KILN_ASSIGN_OR_RETURN(bool exited, Pump(out_r.get(), pidfd.get(),
                                          std::chrono::steady_clock::now() + args.timeout, lines));
  lines.Finish();
  if (!exited) {
    return Fail(Errc::kTimeout, "debootstrap did not finish within " +
                                    std::to_string(args.timeout.count()) + " s: " + lines.Tail());
  }
  child.KillGroup();  // whatever it left running
  int status = child.Reap();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  std::string how = WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                      : "killed by signal " + std::to_string(WTERMSIG(status));
  return Fail(Errc::kInternal, "debootstrap " + how + ": " + lines.Tail());
}

DebootstrapProgress::DebootstrapProgress(int expected_debs, int from_percent, int to_percent)
    : expected_(std::max(expected_debs, 1)),
      from_(from_percent),
      to_(to_percent),
      percent_(from_percent) {}

int DebootstrapProgress::Scaled(int count, int expected, int from, int to) const {
  expected = std::max(expected, 1);
  return from + (to - from) * std::min(count, expected) / expected;
}

void DebootstrapProgress::Advance(const char* phase, int permille) {
  phase_ = phase;
  percent_ = std::max(percent_, from_ + (to_ - from_) * std::clamp(permille, 0, 1000) / 1000);
}

std::optional<BuildProgress> DebootstrapProgress::Feed(std::string_view line) {
  if (line.starts_with("W: ") || line.starts_with("E: ")) {
    return BuildProgress{phase_, std::string(line), percent_};
  }
  if (!line.starts_with("I: ")) return std::nullopt;
  std::string_view msg = line.substr(3);
  while (!msg.empty() && (msg.back() == ' ' || msg.back() == '\t')) msg.remove_suffix(1);
  auto package_line = [&](std::string_view verb) {
    // "Retrieving libc6 2.36-9" names a package; "Retrieving Packages" an index.
    if (!msg.starts_with(verb)) return false;
    std::string_view rest = msg.substr(verb.size());
    return !rest.empty() && rest != "Packages" && rest != "InRelease" && rest != "Release" &&
           rest != "Release.gpg" && !rest.ends_with("packages...") && rest != "the base system...";
  };
  if (package_line("Retrieving ")) {
    Advance("download", Scaled(++retrieved_, expected_, 50, 450));
  } else if (package_line("Validating ")) {
    Advance("download", Scaled(retrieved_, expected_, 50, 450));
  } else if (msg.starts_with("Retrieving ") || msg.starts_with("Validating ") ||
             msg.contains("Release signature")) {
    Advance("download", 20);
  } else if (msg.starts_with("Resolving dependencies") || msg.starts_with("Found additional") ||
             msg.starts_with("Checking component")) {
    Advance("download", 45);
  } else if (msg.starts_with("Chosen extractor")) {
    Advance("extract", 450);
  } else if (package_line("Extracting ")) {
    Advance("extract", Scaled(++extracted_, expected_ * 6 / 10, 450, 550));
  } else if (msg.starts_with("Installing core packages")) {
    Advance("unpack", 550);
  } else if (package_line("Unpacking ")) {
    Advance("unpack", Scaled(++unpacked_, expected_, 560, 700));
  } else if (msg.starts_with("Unpacking ")) {
    Advance("unpack", 560);
  } else if (package_line("Configuring ")) {
    Advance("configure", Scaled(++configured_, expected_, 700, 990));
  } else if (msg.starts_with("Configuring ")) {
    Advance("configure", 700);
  } else if (msg.starts_with("Base system installed successfully")) {
    Advance("configure", 1000);
  }
  return BuildProgress{phase_, std::string(msg), percent_};
}

}  // namespace kiln::kilnd::tmpl
