#pragma once

// The seccomp filter of every sandbox: a deny list at least as strict as Docker's default
// profile. Compiled once per runtime with libseccomp into classic BPF; each sandbox child loads
// the ready program with one seccomp(2) call (measured-host.md §1.3: compiling is most of the
// cost of seccomp, loading is negligible).

#include <linux/filter.h>

#include <vector>

#include "base/error.h"

namespace kiln::kilnd::ns {

// A compiled filter. Immutable after construction; prog() may be shared by concurrent creates.
class SeccompProgram {
 public:
  explicit SeccompProgram(std::vector<sock_filter> insns);
  SeccompProgram(SeccompProgram&& o) noexcept;
  SeccompProgram& operator=(SeccompProgram&&) = delete;

  // Argument for seccomp(SECCOMP_SET_MODE_FILTER, 0, prog()).
  const sock_fprog* prog() const { return &prog_; }
  size_t size() const { return insns_.size(); }

 private:
  std::vector<sock_filter> insns_;
  sock_fprog prog_;
};

// Builds the sandbox policy for the native architecture (other architectures, e.g. i386
// system calls of 32-bit programs, kill the process):
//   - EPERM: kernel keyrings, bpf, perf_event_open, userfaultfd, kexec, kernel modules, mount
//     and the new mount API, unshare, setns, ptrace and process_vm_*/pidfd_getfd/kcmp, iopl,
//     ioperm, acct, swap, reboot, clock and time setting, quotactl, file handles,
//     lookup_dcookie, io_uring, syslog, vhangup, NUMA memory policy, personality values other
//     than the ones Docker allows (0, PER_LINUX32, UNAME26, both, and the query 0xffffffff);
//   - EPERM for clone(2) with any CLONE_NEW* flag;
//   - ENOSYS for clone3(2), whose flags live in memory a filter cannot read: libc then falls
//     back to clone(2), whose flags the filter checks.
Result<SeccompProgram> CompileSandboxSeccompPolicy();

}  // namespace kiln::kilnd::ns
