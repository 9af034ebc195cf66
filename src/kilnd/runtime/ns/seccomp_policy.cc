#include "kilnd/runtime/ns/seccomp_policy.h"

#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include "base/unique_fd.h"

namespace kiln::kilnd::ns {
namespace {

// System calls every sandbox gets EPERM for. Names libseccomp does not know on this
// architecture (i386-only calls, or calls newer than the library) are skipped here and
// covered by kDeniedNumbers.
constexpr const char* kDenied[] = {
    // kernel keyrings, bpf, profiling, userfaultfd
    "add_key", "keyctl", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "lookup_dcookie", "fanotify_init",
    // kernel images and modules
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "get_kernel_syms", "query_module", "uselib",
    // mounts, old and new API, and namespaces
    "mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr", "unshare", "setns",
    // other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd",
    "kcmp",
    // hardware, host administration
    "iopl", "ioperm", "acct", "swapon", "swapoff", "reboot", "syslog", "vhangup", "quotactl",
    "quotactl_fd", "nfsservctl", "_sysctl", "sysfs", "ustat", "vm86", "vm86old",
    // clocks
    "settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex",
    // file handles (open_by_handle_at escapes a chroot/mount namespace)
    "name_to_handle_at", "open_by_handle_at",
    // io_uring bypasses this filter for the operations it performs
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    // NUMA policy (Docker: CAP_SYS_NICE only)
    "get_mempolicy", "set_mempolicy", "mbind", "migrate_pages", "move_pages",
    "set_mempolicy_home_node",
};

// x86-64 numbers of calls newer than libseccomp 2.5: open_tree_attr (6.15, mount API).
constexpr int kDeniedNumbers[] = {467};

constexpr uint64_t kNamespaceFlags[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS,
                                        CLONE_NEWIPC,  CLONE_NEWUSER,   CLONE_NEWPID,
                                        CLONE_NEWNET};

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};

Status Check(int rc, const std::string& what) {
  if (rc < 0) return FailErrno("seccomp: " + what, -rc);
  return {};
}

// personality(2): allow only 0, PER_LINUX32 (8), UNAME26 (0x20000), both (0x20008) and the
// query 0xffffffff, as Docker does. A rule may compare an argument once, so "not one of these"
// is spelled with masked comparisons on the low 32 bits (what the kernel reads):
//   - bit 31 clear and any bit other than 3 and 17 set;
//   - bit 31 set and any other bit clear (all bits set is the query).
Status AddPersonalityRules(scmp_filter_ctx ctx) {
  const uint64_t bit31 = uint64_t{1} << 31;
  for (int b = 0; b < 31; ++b) {
    uint64_t bit = uint64_t{1} << b;
    if (b != 3 && b != 17) {
      KILN_TRY(Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                                      SCMP_A0(SCMP_CMP_MASKED_EQ, bit | bit31, bit)),
                     "personality rule"));
    }
    KILN_TRY(Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                                    SCMP_A0(SCMP_CMP_MASKED_EQ, bit | bit31, bit31)),
                   "personality rule"));
  }
  return {};
}

}  // namespace

SeccompProgram::SeccompProgram(std::vector<sock_filter> insns) : insns_(std::move(insns)) {
  prog_.len = static_cast<unsigned short>(insns_.size());
  prog_.filter = insns_.data();
}

SeccompProgram::SeccompProgram(SeccompProgram&& o) noexcept : insns_(std::move(o.insns_)) {
  prog_.len = static_cast<unsigned short>(insns_.size());
  prog_.filter = insns_.data();
}

Result<SeccompProgram> CompileSandboxSeccompPolicy() {
  std::unique_ptr<void, CtxDeleter> holder(seccomp_init(SCMP_ACT_ALLOW));
  if (!holder) return Fail(Errc::kInternal, "seccomp_init failed");
  scmp_filter_ctx ctx = holder.get();
  KILN_TRY(Check(seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS),
                 "bad-arch action"));
  // The child sets no_new_privs itself when configured; loading must not force it.
  KILN_TRY(Check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0), "nnp attribute"));
  // A binary tree of syscall numbers instead of a linear list.
  KILN_TRY(Check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2), "optimize"));

  for (const char* name : kDenied) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR || nr < 0) continue;  // not a call of this architecture
    KILN_TRY(Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0), std::string("deny ") +
                                                                             name));
  }
  for (int nr : kDeniedNumbers) {
    KILN_TRY(Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0),
                   "deny syscall " + std::to_string(nr)));
  }
  for (uint64_t flag : kNamespaceFlags) {
    KILN_TRY(Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                    SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)),
                   "clone rule"));
  }
  KILN_TRY(Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0),
                 "clone3 rule"));
  KILN_TRY(AddPersonalityRules(ctx));

  // Export to memory: libseccomp writes the program to an fd.
  UniqueFd mem(memfd_create("kiln-seccomp", MFD_CLOEXEC));
  if (!mem) return FailErrno("seccomp: memfd_create");
  KILN_TRY(Check(seccomp_export_bpf(ctx, mem.get()), "export bpf"));
  struct stat st{};
  if (fstat(mem.get(), &st) < 0) return FailErrno("seccomp: fstat memfd");
  if (st.st_size <= 0 || st.st_size % sizeof(sock_filter) != 0 ||
      st.st_size / sizeof(sock_filter) > BPF_MAXINSNS) {
    return Fail(Errc::kInternal, "seccomp: exported program has " +
                                     std::to_string(st.st_size) + " bytes");
  }
  std::vector<sock_filter> insns(static_cast<size_t>(st.st_size) / sizeof(sock_filter));
  ssize_t n = pread(mem.get(), insns.data(), static_cast<size_t>(st.st_size), 0);
  if (n != st.st_size) return FailErrno("seccomp: read exported program");
  return SeccompProgram(std::move(insns));
}

}  // namespace kiln::kilnd::ns
