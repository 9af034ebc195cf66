#include "sys/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

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
