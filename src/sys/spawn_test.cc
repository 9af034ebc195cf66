#include "sys/spawn.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>

#include "base/unique_fd.h"
#include "sys/pty.h"

namespace kiln::sys {
namespace {

SpawnSpec Shell(std::string script) {
  SpawnSpec spec;
  spec.path = "/bin/sh";
  spec.argv = {"sh", "-c", std::move(script)};
  spec.env = {"PATH=/usr/bin:/bin"};
  spec.cwd = "/";
  return spec;
}

int WaitStatus(pid_t pid) {
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

// Runs `spec` with stdout on a pipe; returns everything it printed and its wait status.
std::pair<std::string, int> Capture(SpawnSpec spec) {
  int fds[2];
  EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
  UniqueFd r(fds[0]), w(fds[1]);
  spec.stdout_fd = w.get();
  spec.stderr_fd = w.get();
  Result<pid_t> pid = Spawn(spec);
  EXPECT_TRUE(pid) << pid.error().message();
  if (!pid) return {"", -1};
  w.reset();
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(r.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return {out, WaitStatus(*pid)};
}

TEST(SpawnTest, ReportsExitStatus) {
  Result<pid_t> pid = Spawn(Shell("exit 7"));
  ASSERT_TRUE(pid) << pid.error().message();
  int st = WaitStatus(*pid);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 7);
}

TEST(SpawnTest, AppliesArgvEnvAndCwd) {
  SpawnSpec spec = Shell("echo \"$0 $1 [$A]\"; pwd");
  spec.argv.push_back("zero");
  spec.argv.push_back("one");
  spec.env.push_back("A=x y");
  spec.cwd = "/tmp";
  auto [out, st] = Capture(spec);
  EXPECT_EQ(out, "zero one [x y]\n/tmp\n");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST(SpawnTest, EnvironmentIsOnlyWhatWasGiven) {
  setenv("KILN_SPAWN_TEST_LEAK", "1", 1);
  auto [out, st] = Capture(Shell("echo \"[$KILN_SPAWN_TEST_LEAK]\""));
  unsetenv("KILN_SPAWN_TEST_LEAK");
  EXPECT_EQ(out, "[]\n");
}

TEST(SpawnTest, ChildLeadsItsOwnProcessGroup) {
  // Fields 1 and 5 of /proc/<pid>/stat: pid and process group.
  auto [out, st] = Capture(Shell("cut -d' ' -f1,5 /proc/$$/stat"));
  std::string pid, pgid;
  std::istringstream(out) >> pid >> pgid;
  EXPECT_FALSE(pid.empty());
  EXPECT_EQ(pid, pgid);
}

TEST(SpawnTest, UmaskIs022AndSignalsAreDefault) {
  // An ignored signal survives exec unless the child resets it.
  struct sigaction ign {}, old {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGUSR1, &ign, &old);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  SpawnSpec spec;
  spec.path = "/bin/grep";
  spec.argv = {"grep", "-E", "^(SigIgn|SigBlk)", "/proc/self/status"};
  spec.cwd = "/";
  auto [status_lines, st1] = Capture(spec);
  auto [mask, st2] = Capture(Shell("umask"));
  sigaction(SIGUSR1, &old, nullptr);
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  EXPECT_EQ(status_lines, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
  EXPECT_EQ(mask, "0022\n");
}

TEST(SpawnTest, AgentDescriptorsAreNotInherited) {
  // Not close-on-exec, like the sockets Asio opens.
  UniqueFd leak(fcntl(STDERR_FILENO, F_DUPFD, 77));
  ASSERT_GE(leak.get(), 77);
  SpawnSpec spec;
  spec.path = "/bin/ls";
  spec.argv = {"ls", "/proc/self/fd"};
  spec.cwd = "/";
  auto [out, st] = Capture(spec);
  // 0-2 and the directory ls reads.
  EXPECT_EQ(out, "0\n1\n2\n3\n");
}

TEST(SpawnTest, MissingStdinIsDevNull) {
  auto [out, st] = Capture(Shell("cat; echo end"));
  EXPECT_EQ(out, "end\n");
}

TEST(SpawnTest, MissingCwdIsInvalidArgumentAndLeavesNoChild) {
  SpawnSpec spec = Shell("true");
  spec.cwd = "/nonexistent/dir";
  Result<pid_t> pid = Spawn(spec);
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error().code(), Errc::kInvalidArgument);
  EXPECT_NE(pid.error().message().find("chdir"), std::string::npos) << pid.error().message();
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(SpawnTest, MissingExecutableIsNotFound) {
  SpawnSpec spec = Shell("");
  spec.path = "/nonexistent/program";
  Result<pid_t> pid = Spawn(spec);
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error().code(), Errc::kNotFound);
  EXPECT_NE(pid.error().message().find("exec"), std::string::npos) << pid.error().message();
}

TEST(SpawnTest, SwitchesIdentityWhenRoot) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  SpawnSpec spec = Shell("id -u; id -g; id -G");
  spec.uid = 65534;
  spec.gid = 65533;
  spec.groups = {65533, 65532};
  auto [out, st] = Capture(spec);
  EXPECT_EQ(out, "65534\n65533\n65533 65532\n");
}

std::string MountTable() {
  std::ifstream in("/proc/self/mountinfo");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A jail made of the host's /usr (read-only) and a marker file: the child sees the jail's
// files and its own proc mount; nothing it mounted is left in the host's table afterwards.
TEST(SpawnTest, RootJailMountsInItsOwnNamespace) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/kiln-spawn-jail-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  fs::path root = tmpl;
  struct Cleanup {
    fs::path p;
    ~Cleanup() { fs::remove_all(p); }
  } cleanup{root};
  for (const char* dir : {"usr", "proc", "etc"}) fs::create_directory(root / dir);
  for (const char* link : {"bin", "lib", "lib64", "sbin"}) {
    if (fs::exists(fs::path("/") / link)) fs::create_symlink(std::string("usr/") + link, root / link);
  }
  std::ofstream(root / "etc/marker") << "inside\n";
  SpawnSpec spec = Shell("cat /etc/marker; test -r /proc/self/status && echo proc; test -e /tmp/" +
                         root.filename().string() + " || echo no-host-tmp; touch /usr/x 2>&1 | grep -q Read-only && echo ro");
  spec.root = root;
  spec.mounts = {{"/usr", (root / "usr").string(), "", MS_BIND | MS_REC},
                 {"", (root / "usr").string(), "", MS_BIND | MS_REMOUNT | MS_RDONLY},
                 {"proc", (root / "proc").string(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC}};
  auto [out, st] = Capture(spec);
  EXPECT_EQ(out, "inside\nproc\nno-host-tmp\nro\n");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  EXPECT_EQ(MountTable().find(root.string()), std::string::npos);
}

TEST(SpawnTest, RootJailMountFailureNamesTheStage) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  SpawnSpec spec = Shell("true");
  spec.root = "/";
  spec.mounts = {{"/nonexistent-kiln-source", "/nonexistent-kiln-target", "", MS_BIND}};
  Result<pid_t> pid = Spawn(spec);
  ASSERT_FALSE(pid);
  EXPECT_NE(pid.error().message().find("mount"), std::string::npos) << pid.error().message();
}

TEST(SpawnTest, NewSessionGetsThePtyAsControllingTerminal) {
  Result<PtyPair> pty = OpenPty(100, 30);
  ASSERT_TRUE(pty) << pty.error().message();
  // Reading /dev/tty works only with a controlling terminal.
  SpawnSpec spec = Shell("stty size; (: </dev/tty) 2>/dev/null && echo tty-ok");
  spec.stdin_fd = spec.stdout_fd = spec.stderr_fd = pty->slave.get();
  spec.new_session = true;
  Result<pid_t> pid = Spawn(spec);
  ASSERT_TRUE(pid) << pid.error().message();
  pty->slave.reset();
  std::string out;
  char buf[1024];
  for (;;) {
    pollfd p{pty->master.get(), POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) break;
    ssize_t n = read(pty->master.get(), buf, sizeof buf);
    if (n <= 0) break;  // EIO once the child's side is closed
    out.append(buf, static_cast<size_t>(n));
  }
  WaitStatus(*pid);
  EXPECT_EQ(out, "30 100\r\ntty-ok\r\n");
}

TEST(SpawnTest, ResizePtyChangesTheSize) {
  Result<PtyPair> pty = OpenPty(80, 24);
  ASSERT_TRUE(pty);
  ASSERT_TRUE(ResizePty(pty->master.get(), 132, 43));
  winsize ws{};
  ASSERT_EQ(ioctl(pty->slave.get(), TIOCGWINSZ, &ws), 0);
  EXPECT_EQ(ws.ws_col, 132);
  EXPECT_EQ(ws.ws_row, 43);
}

// ---- Confinement options ----

std::string Readlink(const std::string& path) {
  char buf[256];
  ssize_t n = readlink(path.c_str(), buf, sizeof buf);
  return n < 0 ? "<" + path + ": " + std::strerror(errno) + ">" : std::string(buf, n);
}

bool FdOpen(int fd) { return fcntl(fd, F_GETFD) >= 0; }

// Puts an open file at descriptor `number` for the test, saving what was there and restoring it
// afterwards.
class FdAt {
 public:
  FdAt(int number, const std::string& file) : number_(number) {
    if (FdOpen(number)) saved_.reset(fcntl(number, F_DUPFD_CLOEXEC, 100));
    UniqueFd fd(open(file.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_TRUE(fd) << file;
    if (fd.get() == number) {
      (void)fd.release();  // it landed there already
    } else {
      EXPECT_EQ(dup3(fd.get(), number, O_CLOEXEC), number) << std::strerror(errno);
    }
  }
  ~FdAt() {
    if (saved_) {
      dup3(saved_.get(), number_, O_CLOEXEC);
    } else {
      close(number_);
    }
  }

 private:
  int number_;
  UniqueFd saved_;
};

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/kiln-spawn-test-XXXXXX";
    EXPECT_NE(mkdtemp(tmpl), nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string File(const std::string& name) {
    std::ofstream(path / name) << name;
    return (path / name).string();
  }
};

TEST(SpawnConfinementTest, InheritFdsLandInOrderFrom3) {
  TempDir dir;
  std::string a = dir.File("a"), b = dir.File("b");
  // Sources sitting on targets, in the "wrong" order, a standard descriptor and a repeat.
  FdAt at3(3, a);
  FdAt at4(4, b);
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  UniqueFd r(fds[0]), w(fds[1]);
  SpawnSpec spec = Shell("for i in 3 4 5 6; do readlink /proc/$$/fd/$i; done; ls /proc/$$/fd");
  spec.stdout_fd = w.get();
  spec.inherit_fds = {4, 3, 1, 4};
  Result<pid_t> pid = Spawn(spec);
  ASSERT_TRUE(pid) << pid.error().message();
  w.reset();
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(r.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  WaitStatus(*pid);
  // Target 5 is what the CHILD had as stdout (the caller's fd 1, not the pipe): the sources are
  // taken before stdio is set up.
  std::string expected =
      b + "\n" + a + "\n" + Readlink("/proc/self/fd/1") + "\n" + b + "\n" + "0\n1\n2\n3\n4\n5\n6\n";
  EXPECT_EQ(out, expected);
  // The caller's descriptors are untouched.
  EXPECT_EQ(Readlink("/proc/self/fd/3"), a);
  EXPECT_EQ(Readlink("/proc/self/fd/4"), b);
  EXPECT_EQ(fcntl(3, F_GETFD), FD_CLOEXEC);
}

TEST(SpawnConfinementTest, InheritFdsOtherwiseNothingLeaks) {
  UniqueFd leak(fcntl(STDERR_FILENO, F_DUPFD, 77));  // not close-on-exec
  TempDir dir;
  UniqueFd file(open(dir.File("x").c_str(), O_RDONLY | O_CLOEXEC));
  SpawnSpec spec;
  spec.path = "/bin/ls";
  spec.argv = {"ls", "/proc/self/fd"};
  spec.cwd = "/";
  spec.inherit_fds = {file.get()};
  auto [out, st] = Capture(spec);
  // 0-2, the inherited one, and the directory ls reads.
  EXPECT_EQ(out, "0\n1\n2\n3\n4\n");
}

TEST(SpawnConfinementTest, BadInheritFdNamesTheStage) {
  SpawnSpec spec = Shell("true");
  spec.inherit_fds = {987654};
  Result<pid_t> pid = Spawn(spec);
  ASSERT_FALSE(pid);
  EXPECT_NE(pid.error().message().find("inherit fds"), std::string::npos) << pid.error().message();
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
}

// A new network namespace, kept by the returned fd (made on a short-lived thread, since
// unshare(CLONE_NEWNET) moves only the calling thread).
UniqueFd NewNetns() {
  return std::async(std::launch::async,
                    [] {
                      if (unshare(CLONE_NEWNET) != 0) return UniqueFd();
                      return UniqueFd(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
                    })
      .get();
}

std::string NsName(int fd) {
  struct stat st {};
  fstat(fd, &st);
  return "net:[" + std::to_string(st.st_ino) + "]";
}

TEST(SpawnConfinementTest, EntersTheNetworkNamespace) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  UniqueFd ns = NewNetns();
  ASSERT_TRUE(ns);
  SpawnSpec spec;
  spec.path = "/bin/readlink";
  spec.argv = {"readlink", "/proc/self/ns/net"};
  spec.cwd = "/";
  spec.netns_fd = ns.get();
  auto [out, st] = Capture(spec);
  EXPECT_EQ(out, NsName(ns.get()) + "\n");
  EXPECT_NE(out, Readlink("/proc/thread-self/ns/net") + "\n");
}

TEST(SpawnConfinementTest, SetnsFailureNamesTheStage) {
  UniqueFd not_a_namespace(open("/dev/null", O_RDONLY | O_CLOEXEC));
  SpawnSpec spec = Shell("true");
  spec.netns_fd = not_a_namespace.get();
  Result<pid_t> pid = Spawn(spec);
  ASSERT_FALSE(pid);
  EXPECT_NE(pid.error().message().find("setns net"), std::string::npos) << pid.error().message();
}

TEST(SpawnConfinementTest, UnsharesNamespacesAndMakesMountsPrivate) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  SpawnSpec spec = Shell(
      "for n in mnt ipc uts net pid cgroup; do readlink /proc/self/ns/$n; done; "
      "grep -c shared: /proc/self/mountinfo");
  spec.unshare_flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  auto [out, st] = Capture(spec);
  std::istringstream lines(out);
  std::string mnt, ipc, uts, net, pid, cgroup, shared;
  lines >> mnt >> ipc >> uts >> net >> pid >> cgroup >> shared;
  EXPECT_NE(mnt, Readlink("/proc/self/ns/mnt"));
  EXPECT_NE(ipc, Readlink("/proc/self/ns/ipc"));
  EXPECT_NE(uts, Readlink("/proc/self/ns/uts"));
  EXPECT_EQ(net, Readlink("/proc/thread-self/ns/net"));
  EXPECT_EQ(pid, Readlink("/proc/self/ns/pid"));
  EXPECT_EQ(cgroup, Readlink("/proc/self/ns/cgroup"));
  EXPECT_EQ(shared, "0") << "mounts still propagate";
}

TEST(SpawnConfinementTest, RejectsUnsupportedUnshareFlags) {
  SpawnSpec spec = Shell("true");
  spec.unshare_flags = CLONE_NEWUSER;
  Result<pid_t> pid = Spawn(spec);
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
}

// Reads one line from `fd` within `guard`.
std::string ReadLine(int fd, std::chrono::milliseconds guard = std::chrono::seconds(5)) {
  std::string line;
  char c;
  while (line.empty() || line.back() != '\n') {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(guard.count())) != 1 || read(fd, &c, 1) != 1) break;
    line += c;
  }
  return line;
}

TEST(SpawnConfinementTest, NewPidNamespaceChildIsPid1AndKillableFromHere) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  UniqueFd r(fds[0]), w(fds[1]);
  SpawnSpec spec = Shell("echo $$; readlink /proc/self/ns/pid; exec sleep 1000");
  spec.stdout_fd = w.get();
  spec.unshare_flags = CLONE_NEWPID | CLONE_NEWNS;
  Result<pid_t> pid = Spawn(spec);
  ASSERT_TRUE(pid) << pid.error().message();
  w.reset();
  EXPECT_EQ(ReadLine(r.get()), "1\n");
  EXPECT_NE(ReadLine(r.get()), Readlink("/proc/self/ns/pid") + "\n");
  // The pid is the host's view of the process that exec'd: its NSpid is "<pid> 1".
  std::ifstream status("/proc/" + std::to_string(*pid) + "/status");
  std::string line, nspid;
  while (std::getline(status, line)) {
    if (line.starts_with("NSpid:")) nspid = line;
  }
  EXPECT_EQ(nspid, "NSpid:\t" + std::to_string(*pid) + "\t1");
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, *pid, 0)));
  ASSERT_TRUE(pidfd);
  ASSERT_EQ(syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0), 0);
  int st = WaitStatus(*pid);
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

// The cgroup2 mount (hybrid hosts: /sys/fs/cgroup/unified), or "" without one.
std::filesystem::path UnifiedCgroupRoot() {
  for (const char* dir : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    if (std::filesystem::exists(std::string(dir) + "/cgroup.procs") &&
        std::filesystem::exists(std::string(dir) + "/cgroup.controllers")) {
      return dir;
    }
  }
  return {};
}

TEST(SpawnConfinementTest, JoinsCgroupsBeforeExec) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  std::filesystem::path root = UnifiedCgroupRoot();
  if (root.empty()) GTEST_SKIP() << "no cgroup2 hierarchy";
  std::string name = "kiln-spawn-test-" + std::to_string(getpid());
  std::filesystem::path group = root / name;
  ASSERT_EQ(mkdir(group.c_str(), 0755), 0) << group << ": " << std::strerror(errno);
  struct Remove {
    std::filesystem::path p;
    ~Remove() { rmdir(p.c_str()); }
  } remove{group};
  UniqueFd procs(open((group / "cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(procs);
  SpawnSpec spec;
  spec.path = "/bin/grep";
  spec.argv = {"grep", "^0::", "/proc/self/cgroup"};
  spec.cwd = "/";
  spec.cgroup_procs_fds = {procs.get()};
  auto [out, st] = Capture(spec);
  EXPECT_EQ(out, "0::/" + name + "\n");
}

TEST(SpawnConfinementTest, CgroupFailureNamesTheStage) {
  UniqueFd read_only(open("/dev/null", O_RDONLY | O_CLOEXEC));
  SpawnSpec spec = Shell("true");
  spec.cgroup_procs_fds = {read_only.get()};
  Result<pid_t> pid = Spawn(spec);
  ASSERT_FALSE(pid);
  EXPECT_NE(pid.error().message().find("join cgroup"), std::string::npos) << pid.error().message();
}

TEST(SpawnConfinementTest, NoNewPrivs) {
  SpawnSpec spec;
  spec.path = "/bin/grep";
  spec.argv = {"grep", "^NoNewPrivs", "/proc/self/status"};
  spec.cwd = "/";
  if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0) {
    EXPECT_EQ(Capture(spec).first, "NoNewPrivs:\t0\n");
  }
  spec.no_new_privs = true;
  EXPECT_EQ(Capture(spec).first, "NoNewPrivs:\t1\n");
}

TEST(SpawnConfinementTest, NoHugePages) {
  SpawnSpec spec;
  spec.path = "/bin/grep";
  spec.argv = {"grep", "^THP_enabled", "/proc/self/status"};
  spec.cwd = "/";
  if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 0) {
    EXPECT_EQ(Capture(spec).first, "THP_enabled:\t1\n");
  }
  spec.no_huge_pages = true;
  EXPECT_EQ(Capture(spec).first, "THP_enabled:\t0\n");
}

// Spawns `sleep 1000` from a thread of its own, checks it lives as long as that thread, then
// lets the thread exit: the child must get SIGKILL.
void ExpectDeathWithSpawningThread(SpawnSpec spec) {
  spec.path = "/bin/sleep";
  spec.argv = {"sleep", "1000"};
  spec.cwd = "/";
  spec.parent_death_signal = SIGKILL;
  std::promise<Result<pid_t>> spawned;
  std::promise<void> finish;
  std::thread spawner([&] {
    spawned.set_value(Spawn(spec));
    finish.get_future().wait();
  });
  Result<pid_t> pid = spawned.get_future().get();
  if (!pid) {
    finish.set_value();
    spawner.join();
    FAIL() << pid.error().message();
  }
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, *pid, 0)));
  ASSERT_TRUE(pidfd);
  pollfd p{pidfd.get(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0) << "the child died while its spawning thread lives";
  finish.set_value();
  spawner.join();
  EXPECT_EQ(poll(&p, 1, 5000), 1) << "the child outlived its spawning thread";
  int st = WaitStatus(*pid);
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << st;
}

TEST(SpawnConfinementTest, ParentDeathSignalFollowsTheSpawningThread) {
  ExpectDeathWithSpawningThread(SpawnSpec{});
}

TEST(SpawnConfinementTest, ParentDeathSignalInsideANewPidNamespace) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  SpawnSpec spec;
  spec.unshare_flags = CLONE_NEWPID;
  ExpectDeathWithSpawningThread(spec);
}

TEST(SpawnConfinementTest, ParentDeathSignalSurvivesTheIdentitySwitch) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  SpawnSpec spec;
  spec.uid = 65534;
  spec.gid = 65534;
  ExpectDeathWithSpawningThread(spec);
}

// Spawn's own descriptors (the report pipe, the pidfd for the parent-death check) are opened
// at the lowest free numbers, inside the target range of many inherited fds: they must survive
// the placement. Here every target is a readable pipe, which a clobbered pidfd would look like.
TEST(SpawnConfinementTest, ManyInheritFdsDoNotClobberSpawnsOwnDescriptors) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  UniqueFd r(fds[0]), w(fds[1]);
  ASSERT_EQ(write(w.get(), "x", 1), 1);
  SpawnSpec spec;
  spec.path = "/bin/ls";
  spec.argv = {"ls", "/proc/self/fd"};
  spec.cwd = "/";
  spec.parent_death_signal = SIGKILL;
  spec.inherit_fds.assign(12, r.get());
  auto [out, st] = Capture(spec);
  // 0-2, 12 inherited, and the directory ls reads.
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 16) << out;
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  // A failing exec is still reported (the report pipe was not clobbered).
  spec.path = "/nonexistent/program";
  Result<pid_t> pid = Spawn(spec);
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error().code(), Errc::kNotFound) << pid.error().message();
}

TEST(SpawnConfinementTest, NonRootUserWithoutGroupsHasNoGroupsAndNoCapabilities) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  SpawnSpec spec = Shell("id -G; grep -E '^Cap(Prm|Eff|Amb)' /proc/self/status");
  spec.uid = 65534;
  spec.gid = 65533;
  auto [out, st] = Capture(spec);
  EXPECT_EQ(out,
            "65533\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
            "CapAmb:\t0000000000000000\n");
}

TEST(SpawnConfinementTest, AllTogether) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  UniqueFd ns = NewNetns();
  ASSERT_TRUE(ns);
  TempDir dir;
  UniqueFd tap_stand_in(open(dir.File("tap").c_str(), O_RDONLY | O_CLOEXEC));
  SpawnSpec spec = Shell(
      "echo $$; readlink /proc/self/ns/net; readlink /proc/self/fd/3; id -u; "
      "grep ^NoNewPrivs /proc/self/status");
  spec.uid = 65534;
  spec.gid = 65534;
  spec.inherit_fds = {tap_stand_in.get()};
  spec.netns_fd = ns.get();
  spec.unshare_flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID;
  spec.no_new_privs = true;
  spec.parent_death_signal = SIGKILL;
  auto [out, st] = Capture(spec);
  EXPECT_EQ(out, "1\n" + NsName(ns.get()) + "\n" + (dir.path / "tap").string() +
                     "\n65534\nNoNewPrivs:\t1\n");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST(FindExecutableTest, SearchesPathInOrder) {
  Result<std::string> sh = FindExecutable("sh", "/nonexistent:/bin:/usr/bin");
  ASSERT_TRUE(sh);
  EXPECT_EQ(*sh, "/bin/sh");
}

TEST(FindExecutableTest, PathsAreNotSearched) {
  EXPECT_EQ(FindExecutable("./x/y", "/bin").value(), "./x/y");
  EXPECT_EQ(FindExecutable("/bin/sh", "").value(), "/bin/sh");
  EXPECT_EQ(FindExecutable("/nonexistent/sh", "/bin").error().code(), Errc::kNotFound);
  EXPECT_EQ(FindExecutable("/tmp", "/bin").error().code(), Errc::kNotFound);
}

TEST(FindExecutableTest, MissingIsNotFoundAndEmptyIsInvalid) {
  EXPECT_EQ(FindExecutable("kiln-no-such-program", "/bin:/usr/bin").error().code(),
            Errc::kNotFound);
  EXPECT_EQ(FindExecutable("", "/bin").error().code(), Errc::kInvalidArgument);
  // Directories and non-executable files do not count.
  EXPECT_EQ(FindExecutable("passwd", "/etc").error().code(), Errc::kNotFound);
  EXPECT_EQ(FindExecutable("tmp", "/").error().code(), Errc::kNotFound);
}

}  // namespace
}  // namespace kiln::sys
