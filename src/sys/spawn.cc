#include "sys/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string_view>

#include "base/unique_fd.h"

namespace kiln::sys {
namespace {

enum class Stage : int {
  kSession,
  kStdio,
  kCloseFds,
  kMountNs,
  kMount,
  kChroot,
  kGroups,
  kGid,
  kUid,
  kChdir,
  kSignals,
  kExec,
  kCgroup,
  kSetnsNet,
  kInheritFds,
  kUnshare,
  kPrivateMounts,
  kDeathSignal,
  kNoNewPrivs,
  kHugePages
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
    case Stage::kCgroup: return "join cgroup";
    case Stage::kSetnsNet: return "setns net";
    case Stage::kInheritFds: return "inherit fds";
    case Stage::kUnshare: return "unshare";
    case Stage::kPrivateMounts: return "make mounts private";
    case Stage::kDeathSignal: return "parent death signal";
    case Stage::kNoNewPrivs: return "no_new_privs";
    case Stage::kHugePages: return "disable huge pages";
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

// Marks every descriptor from `first` up close-on-exec (Asio's sockets are not opened with
// O_CLOEXEC). Falls back to a loop where close_range(2) is missing (Linux < 5.11).
bool CloseOnExecFrom(unsigned first) {
  if (close_range(first, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return true;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) < 0) return false;
  rlim_t max = lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur > 65536 ? 65536 : lim.rlim_cur;
  for (rlim_t fd = first; fd < max; ++fd) fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
  return true;
}

// What the child needs besides the spec, prepared by the parent (the child never allocates).
struct ChildContext {
  int devnull = -1;
  int report_fd = -1;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  // inherit_fds.size() slots for the child's copies of the inherited descriptors.
  int* moved_fds = nullptr;
  // The spawning process: its pid (for the parent-death re-check), and a pidfd of it for the
  // same check from inside a new PID namespace, where getppid() is always 0. -1 if unavailable.
  pid_t parent_pid = 0;
  int parent_pidfd = -1;
};

constexpr int kFirstInherited = 3;

// Joins the sandbox's cgroups and network namespace: before the descriptor shuffle, which may
// overwrite the fds they come in.
void JoinCgroupsAndNetns(const SpawnSpec& spec, const ChildContext& ctx) {
  for (int fd : spec.cgroup_procs_fds) {
    // "0" is the writing process itself, in v1 and v2 alike.
    if (write(fd, "0", 1) != 1) ChildFail(ctx.report_fd, Stage::kCgroup);
  }
  if (spec.netns_fd >= 0 && setns(spec.netns_fd, CLONE_NEWNET) < 0) {
    ChildFail(ctx.report_fd, Stage::kSetnsNet);
  }
}

// Step 1 of inherit_fds: copies every source, the report pipe and the parent pidfd above the
// target range 3..3+n-1, close-on-exec, so that step 2 can dup2 onto the targets without
// clobbering a source that sits on a target or a descriptor the child still needs. Runs before
// stdio is set up, so a standard descriptor given as a source is still the caller's.
void MoveInheritedAside(const SpawnSpec& spec, ChildContext& ctx) {
  size_t n = spec.inherit_fds.size();
  if (n == 0) return;
  int above = kFirstInherited + static_cast<int>(n);
  int report = fcntl(ctx.report_fd, F_DUPFD_CLOEXEC, above);
  if (report < 0) ChildFail(ctx.report_fd, Stage::kInheritFds);
  ctx.report_fd = report;
  if (ctx.parent_pidfd >= 0) {
    // Still needed after step 2 (the parent-death re-check).
    ctx.parent_pidfd = fcntl(ctx.parent_pidfd, F_DUPFD_CLOEXEC, above);
    if (ctx.parent_pidfd < 0) ChildFail(ctx.report_fd, Stage::kInheritFds);
  }
  for (size_t i = 0; i < n; ++i) {
    ctx.moved_fds[i] = fcntl(spec.inherit_fds[i], F_DUPFD_CLOEXEC, above);
    if (ctx.moved_fds[i] < 0) ChildFail(ctx.report_fd, Stage::kInheritFds);
  }
}

// Step 2: the copies go to 3, 4, ... (dup2 leaves the new descriptor without close-on-exec);
// everything above is marked close-on-exec.
void PlaceInheritedAndCloseRest(const SpawnSpec& spec, const ChildContext& ctx) {
  size_t n = spec.inherit_fds.size();
  for (size_t i = 0; i < n; ++i) {
    if (dup2(ctx.moved_fds[i], kFirstInherited + static_cast<int>(i)) < 0) {
      ChildFail(ctx.report_fd, Stage::kInheritFds);
    }
  }
  if (!CloseOnExecFrom(static_cast<unsigned>(kFirstInherited + n))) {
    ChildFail(ctx.report_fd, Stage::kCloseFds);
  }
}

void SetUpStdio(const SpawnSpec& spec, const ChildContext& ctx) {
  if (spec.new_session) {
    if (setsid() < 0) ChildFail(ctx.report_fd, Stage::kSession);
    if (ioctl(spec.stdin_fd, TIOCSCTTY, 0) < 0) ChildFail(ctx.report_fd, Stage::kSession);
  } else if (setpgid(0, 0) < 0) {
    ChildFail(ctx.report_fd, Stage::kSession);
  }
  const int fds[3] = {spec.stdin_fd, spec.stdout_fd, spec.stderr_fd};
  for (int i = 0; i < 3; ++i) {
    int src = fds[i] >= 0 ? fds[i] : ctx.devnull;
    if (src == i) {
      // dup2 onto itself would keep FD_CLOEXEC.
      if (fcntl(i, F_SETFD, 0) < 0) ChildFail(ctx.report_fd, Stage::kStdio);
    } else if (dup2(src, i) < 0) {
      ChildFail(ctx.report_fd, Stage::kStdio);
    }
  }
}

// New namespaces (CLONE_NEWPID was applied by clone already), then the build-tool jail.
void EnterNamespacesAndJail(const SpawnSpec& spec, const ChildContext& ctx) {
  int flags = spec.unshare_flags & ~CLONE_NEWPID;
  if (flags != 0 && unshare(flags) < 0) ChildFail(ctx.report_fd, Stage::kUnshare);
  if ((flags & CLONE_NEWNS) != 0 &&
      mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) {
    ChildFail(ctx.report_fd, Stage::kPrivateMounts);
  }
  if (spec.root.empty()) return;
  if ((flags & CLONE_NEWNS) == 0) {
    if (unshare(CLONE_NEWNS) < 0) ChildFail(ctx.report_fd, Stage::kMountNs);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) {
      ChildFail(ctx.report_fd, Stage::kMountNs);
    }
  }
  for (const SpawnSpec::Mount& m : spec.mounts) {
    const char* fstype = m.fstype.empty() ? nullptr : m.fstype.c_str();
    if (mount(m.source.c_str(), m.target.c_str(), fstype, m.flags, nullptr) < 0) {
      ChildFail(ctx.report_fd, Stage::kMount);
    }
  }
  if (chroot(spec.root.c_str()) < 0 || chdir("/") < 0) ChildFail(ctx.report_fd, Stage::kChroot);
}

// SECURITY: privileges drop here; groups first, uid last (after setuid nothing else can
// be changed). setgroups with an empty list clears the supplementary groups; setresuid from
// root to another uid clears the effective, permitted and ambient capabilities.
void SwitchIdentity(const SpawnSpec& spec, const ChildContext& ctx) {
  if (geteuid() != 0) return;
  if (setgroups(spec.groups.size(), spec.groups.empty() ? nullptr : spec.groups.data()) < 0) {
    ChildFail(ctx.report_fd, Stage::kGroups);
  }
  if (setresgid(spec.gid, spec.gid, spec.gid) < 0) ChildFail(ctx.report_fd, Stage::kGid);
  if (setresuid(spec.uid, spec.uid, spec.uid) < 0) ChildFail(ctx.report_fd, Stage::kUid);
}

// After the identity switch, which clears the death signal.
void SetDeathSignalAndNoNewPrivs(const SpawnSpec& spec, const ChildContext& ctx) {
  if (spec.parent_death_signal != 0) {
    if (prctl(PR_SET_PDEATHSIG, spec.parent_death_signal, 0, 0, 0) < 0) {
      ChildFail(ctx.report_fd, Stage::kDeathSignal);
    }
    // The caller may have died before prctl: then no signal will come. Outside a new PID
    // namespace the child was reparented; inside, getppid() is 0, so ask the caller's pidfd.
    bool gone = (spec.unshare_flags & CLONE_NEWPID) == 0 && getppid() != ctx.parent_pid;
    if (ctx.parent_pidfd >= 0) {
      pollfd p{ctx.parent_pidfd, POLLIN, 0};
      gone = gone || poll(&p, 1, 0) == 1;
    }
    if (gone) {
      errno = ESRCH;
      ChildFail(ctx.report_fd, Stage::kDeathSignal);  // nobody may be left to read it
    }
  }
  if (spec.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    ChildFail(ctx.report_fd, Stage::kNoNewPrivs);
  }
  if (spec.no_huge_pages && prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) < 0) {
    ChildFail(ctx.report_fd, Stage::kHugePages);
  }
}

// Runs in the child between fork and exec: syscalls only. The order follows what a login
// does (session, descriptors, credentials, then the directory as the new user), with the
// sandbox's cgroups and network namespace joined first.
[[noreturn]] void ChildMain(const SpawnSpec& spec, ChildContext ctx) {
  JoinCgroupsAndNetns(spec, ctx);
  MoveInheritedAside(spec, ctx);
  SetUpStdio(spec, ctx);
  PlaceInheritedAndCloseRest(spec, ctx);
  EnterNamespacesAndJail(spec, ctx);
  SwitchIdentity(spec, ctx);
  SetDeathSignalAndNoNewPrivs(spec, ctx);
  if (chdir(spec.cwd.c_str()) < 0) ChildFail(ctx.report_fd, Stage::kChdir);
  umask(022);
  // Handlers installed by the agent are reset by exec, but ignored signals (the agent
  // ignores SIGPIPE) would stay ignored: restore every default, then unblock everything.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) < 0) ChildFail(ctx.report_fd, Stage::kSignals);
  execve(spec.path.c_str(), ctx.argv, ctx.envp);
  ChildFail(ctx.report_fd, Stage::kExec);
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

Status CheckConfinement(const SpawnSpec& spec) {
  constexpr int kSupported =
      CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_NEWPID;
  if ((spec.unshare_flags & ~kSupported) != 0) {
    return Fail(Errc::kInvalidArgument, "spawn " + spec.path + ": unsupported unshare flags " +
                                            std::to_string(spec.unshare_flags & ~kSupported));
  }
  if (spec.parent_death_signal < 0 || spec.parent_death_signal >= NSIG) {
    return Fail(Errc::kInvalidArgument, "spawn " + spec.path + ": bad parent death signal " +
                                            std::to_string(spec.parent_death_signal));
  }
  return {};
}

// fork(), or with CLONE_NEWPID a clone() whose child is PID 1 of a new PID namespace. The raw
// clone skips glibc's fork handlers; that is fine because the child only makes syscalls.
pid_t ForkChild(const SpawnSpec& spec) {
  if ((spec.unshare_flags & CLONE_NEWPID) == 0) return fork();
  return static_cast<pid_t>(
      syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
}

}  // namespace

Result<pid_t> Spawn(const SpawnSpec& spec) {
  KILN_TRY(CheckConfinement(spec));
  std::vector<char*> argv = CStrings(spec.argv);
  std::vector<char*> envp = CStrings(spec.env);
  std::vector<int> moved_fds(spec.inherit_fds.size(), -1);
  UniqueFd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) return FailErrno("open /dev/null");
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) return FailErrno("pipe2");
  UniqueFd report_r(pipefd[0]);
  UniqueFd report_w(pipefd[1]);
  UniqueFd self_pidfd;
  if (spec.parent_death_signal != 0) {
    // Best effort (pidfd_open needs Linux 5.3); the child only uses it inside a new PID ns.
    self_pidfd.reset(static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)));
  }
  ChildContext ctx{devnull.get(),    report_w.get(), argv.data(),     envp.data(),
                   moved_fds.data(), getpid(),       self_pidfd.get()};
  // Signals stay blocked from fork until the child has reset its dispositions, so that no
  // agent handler (Asio's, which writes to the agent's self-pipe) ever runs in the child.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = ForkChild(spec);
  if (pid == 0) ChildMain(spec, ctx);
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
