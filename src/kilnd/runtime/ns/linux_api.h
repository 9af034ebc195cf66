#pragma once

// Thin wrappers for the syscalls the ns runtime needs that glibc 2.36 lacks (clone3, seccomp,
// capset) or declares unusably from C++ (its <sys/pidfd.h> has no C linkage). Each is one
// syscall, async-signal-safe, usable between clone and exec.

#include <linux/sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>

namespace kiln::kilnd::ns::linux_api {

inline pid_t Clone3(clone_args* args) {
  return static_cast<pid_t>(syscall(SYS_clone3, args, sizeof(clone_args)));
}

inline int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

inline int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

inline int SeccompSetFilter(unsigned int flags, const void* prog) {
  return static_cast<int>(syscall(SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, flags, prog));
}

// capset(2) with the version-3 (64-bit) layout: one mask for each of the three sets.
struct CapSets {
  uint64_t effective = 0;
  uint64_t permitted = 0;
  uint64_t inheritable = 0;
};
int Capset(const CapSets& sets);

}  // namespace kiln::kilnd::ns::linux_api
