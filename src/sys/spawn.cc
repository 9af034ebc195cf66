#include "sys/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string_view>

#include "base/unique_fd.h"

namespace kiln::sys {
namespace {

enum class Stage : int {
  kSession, kStdio, kCloseFds, kMountNs, kMount, kChroot, kGroups, kGid, kUid, kChdir, kSignals, kExec
};

const char* StageName(Stage s) {
  switch (s) {
    case Stage::kSession: return "session";
    case Stage::kStdio: return "stdio";
    case Stage::kCloseFds: return "close fds";
    case Stage::kMountNs: return "new mount namespace";
    case Stage::kMount: return "mount";
    case Stage::kChroot: return "chroot";
    case Stage::kGroups: return "setgroups";
    case Stage::kGid: return "setgid";
    case Stage::kUid: return "setuid";
    case Stage::kChdir: return "chdir";
    case Stage::kSignals: return "signals";
    case Stage::kExec: return "exec";
  }
  return "?";
}

// What a child that failed before exec writes to the report pipe.
struct ChildReport {
  Stage stage;
  int err;
};

[[noreturn]] void ChildFail(int report_fd, Stage stage) {
  ChildReport r{stage, errno};
  [[maybe_unused]] ssize_t n = write(report_fd, &r, sizeof r);
  _exit(127);
}

// Marks every descriptor from 3 up close-on-exec (Asio's sockets are not opened with
// O_CLOEXEC). Falls back to a loop where close_range(2) is missing (Linux < 5.11).
bool CloseOnExecFrom3() {
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return true;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) < 0) return false;
  rlim_t max = lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur > 65536 ? 65536 : lim.rlim_cur;
  for (rlim_t fd = 3; fd < max; ++fd) fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
  return true;
}

// Runs in the child between fork and exec: syscalls only. The order follows what a login
// does: session, descriptors, credentials, then the directory as the new user.
[[noreturn]] void ChildMain(const SpawnSpec& spec, int devnull, int report_fd, char* const* argv,
                            char* const* envp) {
  if (spec.new_session) {
    if (setsid() < 0) ChildFail(report_fd, Stage::kSession);
    if (ioctl(spec.stdin_fd, TIOCSCTTY, 0) < 0) ChildFail(report_fd, Stage::kSession);
  } else if (setpgid(0, 0) < 0) {
    ChildFail(report_fd, Stage::kSession);
  }
  const int fds[3] = {spec.stdin_fd, spec.stdout_fd, spec.stderr_fd};
  for (int i = 0; i < 3; ++i) {
    int src = fds[i] >= 0 ? fds[i] : devnull;
    if (src == i) {
      // dup2 onto itself would keep FD_CLOEXEC.
      if (fcntl(i, F_SETFD, 0) < 0) ChildFail(report_fd, Stage::kStdio);
    } else if (dup2(src, i) < 0) {
      ChildFail(report_fd, Stage::kStdio);
    }
  }
  if (!CloseOnExecFrom3()) ChildFail(report_fd, Stage::kCloseFds);
  if (!spec.root.empty()) {
    if (unshare(CLONE_NEWNS) < 0) ChildFail(report_fd, Stage::kMountNs);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) {
      ChildFail(report_fd, Stage::kMountNs);
    }
    for (const SpawnSpec::Mount& m : spec.mounts) {
      const char* fstype = m.fstype.empty() ? nullptr : m.fstype.c_str();
      if (mount(m.source.c_str(), m.target.c_str(), fstype, m.flags, nullptr) < 0) {
        ChildFail(report_fd, Stage::kMount);
      }
    }
    if (chroot(spec.root.c_str()) < 0 || chdir("/") < 0) ChildFail(report_fd, Stage::kChroot);
  }
  // SECURITY: privileges drop here; groups first, uid last (after setuid nothing else can
  // be changed).
  if (geteuid() == 0) {
    if (setgroups(spec.groups.size(), spec.groups.data()) < 0) {
      ChildFail(report_fd, Stage::kGroups);
    }
    if (setresgid(spec.gid, spec.gid, spec.gid) < 0) ChildFail(report_fd, Stage::kGid);
    if (setresuid(spec.uid, spec.uid, spec.uid) < 0) ChildFail(report_fd, Stage::kUid);
  }
  if (chdir(spec.cwd.c_str()) < 0) ChildFail(report_fd, Stage::kChdir);
  umask(022);
  // Handlers installed by the agent are reset by exec, but ignored signals (the agent
  // ignores SIGPIPE) would stay ignored: restore every default, then unblock everything.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) < 0) ChildFail(report_fd, Stage::kSignals);
  execve(spec.path.c_str(), argv, envp);
  ChildFail(report_fd, Stage::kExec);
}

std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const std::string& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

Error ReportError(const SpawnSpec& spec, const ChildReport& report) {
  std::string what = "spawn ";
  what.append(spec.path).append(": ").append(StageName(report.stage));
  Error e = Error::FromErrno(report.err, what);
  if (report.stage == Stage::kChdir) return Error(Errc::kInvalidArgument, e.message(), report.err);
  return e;
}

}  // namespace

Result<pid_t> Spawn(const SpawnSpec& spec) {
  std::vector<char*> argv = CStrings(spec.argv);
  std::vector<char*> envp = CStrings(spec.env);
  UniqueFd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) return FailErrno("open /dev/null");
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) return FailErrno("pipe2");
  UniqueFd report_r(pipefd[0]);
  UniqueFd report_w(pipefd[1]);
  // Signals stay blocked from fork until the child has reset its dispositions, so that no
  // agent handler (Asio's, which writes to the agent's self-pipe) ever runs in the child.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = fork();
  if (pid == 0) ChildMain(spec, devnull.get(), report_w.get(), argv.data(), envp.data());
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return FailErrno("fork", fork_errno);
  report_w.reset();
  ChildReport report{};
  ssize_t n;
  do {
    n = read(report_r.get(), &report, sizeof report);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return pid;  // the pipe closed on exec
  // The child failed before exec: collect it here so that nothing is left behind (no other
  // code runs on this thread in between, so the agent's reaper cannot take it first).
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof report)) {
    return Fail(Errc::kInternal, "spawn " + spec.path + ": short report from the child");
  }
  return Unexpected(ReportError(spec, report));
}

Result<std::string> FindExecutable(const std::string& cmd, const std::string& path_env) {
  if (cmd.empty()) return Fail(Errc::kInvalidArgument, "empty command");
  if (cmd.front() == '/') {
    struct stat st;
    if (stat(cmd.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Fail(Errc::kNotFound, "executable '" + cmd + "' not found");
    }
    return cmd;
  }
  // Relative to the child's working directory, which exec resolves.
  if (cmd.find('/') != std::string::npos) return cmd;
  size_t start = 0;
  while (start <= path_env.size()) {
    size_t colon = path_env.find(':', start);
    if (colon == std::string::npos) colon = path_env.size();
    std::string_view dir = std::string_view(path_env).substr(start, colon - start);
    std::string candidate(dir.empty() ? std::string_view(".") : dir);
    candidate += '/';
    candidate += cmd;
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = colon + 1;
  }
  return Fail(Errc::kNotFound, "executable '" + cmd + "' not found in PATH");
}

}  // namespace kiln::sys
