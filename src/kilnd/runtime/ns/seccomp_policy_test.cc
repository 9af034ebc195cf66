#include "kilnd/runtime/ns/seccomp_policy.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "base/unique_fd.h"
#include "kilnd/runtime/ns/linux_api.h"

namespace kiln::kilnd::ns {
namespace {

TEST(SeccompPolicyTest, Compiles) {
  auto prog = CompileSandboxSeccompPolicy();
  ASSERT_TRUE(prog) << prog.error().message();
  EXPECT_GT(prog->size(), 50u);
  EXPECT_EQ(prog->prog()->len, prog->size());
}

// Loads the filter in a forked child (with no_new_privs, so no privilege is needed) and
// reports each probe as "name=<errno> " (0 = allowed).
std::string ProbeInFilteredChild() {
  auto prog = CompileSandboxSeccompPolicy();
  if (!prog) return "compile failed: " + prog.error().message();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    char out[2048];
    size_t len = 0;
    auto note = [&](const char* name, long r) {
      int e = r < 0 ? errno : 0;
      len += static_cast<size_t>(snprintf(out + len, sizeof out - len, "%s=%d ", name, e));
    };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        linux_api::SeccompSetFilter(0, prog->prog()) != 0) {
      note("load", -1);
    } else {
      note("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
      note("bpf", syscall(SYS_bpf, 0, nullptr, 0));
      note("clone3", syscall(SYS_clone3, nullptr, 0));
      note("unshare", unshare(CLONE_NEWUSER));
      long c = syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, nullptr, nullptr, nullptr, 0);
      if (c == 0) _exit(99);  // must not happen: the filter failed open
      note("clone_newnet", c);
      note("mount", mount("none", "/tmp", "tmpfs", 0, nullptr));
      note("open_tree_attr", syscall(467, -1, "", 0, nullptr, 0));
      note("io_uring_setup", syscall(SYS_io_uring_setup, 1, nullptr));
      note("ptrace", ptrace(PTRACE_TRACEME, 0, nullptr, nullptr));
      note("setns", setns(0, 0));
      note("pers_norandom", personality(ADDR_NO_RANDOMIZE));
      note("pers_bit31", personality(0x80040000));
      note("pers_almost_all", personality(0xfffdfff7));
      note("pers_query", personality(0xffffffff));
      note("pers_linux32", personality(PER_LINUX32));
      note("pers_zero", personality(PER_LINUX));
      note("getpid", getpid());
      pid_t child = fork();  // clone without namespace flags
      if (child == 0) _exit(0);
      note("fork", child);
      if (child > 0) waitpid(child, nullptr, 0);
    }
    [[maybe_unused]] ssize_t n = write(fds[1], out, len);
    _exit(0);
  }
  close(fds[1]);
  UniqueFd rd(fds[0]);
  std::string result;
  char buf[512];
  ssize_t n;
  while ((n = read(rd.get(), buf, sizeof buf)) > 0) result.append(buf, static_cast<size_t>(n));
  int status = 0;
  waitpid(pid, &status, 0);
  return result;
}

TEST(SeccompPolicyTest, DeniesDangerousCallsAndAllowsOrdinaryOnes) {
  std::string r = ProbeInFilteredChild();
  auto expect = [&r](const std::string& name, int err) {
    EXPECT_NE(r.find(name + "=" + std::to_string(err) + " "), std::string::npos)
        << name << " in: " << r;
  };
  expect("keyctl", EPERM);
  expect("bpf", EPERM);
  expect("clone3", ENOSYS);
  expect("unshare", EPERM);
  expect("clone_newnet", EPERM);
  expect("mount", EPERM);
  expect("open_tree_attr", EPERM);
  expect("io_uring_setup", EPERM);
  expect("ptrace", EPERM);
  expect("setns", EPERM);
  expect("pers_norandom", EPERM);
  expect("pers_bit31", EPERM);
  expect("pers_almost_all", EPERM);
  expect("pers_query", 0);
  expect("pers_linux32", 0);
  expect("pers_zero", 0);
  expect("getpid", 0);
  expect("fork", 0);
}

}  // namespace
}  // namespace kiln::kilnd::ns
