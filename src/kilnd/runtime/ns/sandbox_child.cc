#include "kilnd/runtime/ns/sandbox_child.h"

#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kilnd/runtime/ns/linux_api.h"

namespace kiln::kilnd::ns {

const char* ChildStageName(ChildStage stage) {
  switch (stage) {
    case ChildStage::kWaitParent: return "wait for parent";
    case ChildStage::kWaitCgroups: return "wait for cgroups";
    case ChildStage::kCredentials: return "set credentials";
    case ChildStage::kCgroupNamespace: return "cgroup namespace";
    case ChildStage::kHostname: return "sethostname";
    case ChildStage::kLoopback: return "loopback up";
    case ChildStage::kMountPrivate: return "make mounts private";
    case ChildStage::kAttachLayer: return "attach writable layer";
    case ChildStage::kAttachLower: return "attach idmapped rootfs";
    case ChildStage::kMountOverlay: return "mount overlay";
    case ChildStage::kMountProc: return "mount /proc";
    case ChildStage::kMountSys: return "mount /sys";
    case ChildStage::kMaskPaths: return "mask /proc paths";
    case ChildStage::kMountDev: return "mount /dev";
    case ChildStage::kDeviceNodes: return "bind device nodes";
    case ChildStage::kMountDevpts: return "mount /dev/pts";
    case ChildStage::kDevLinks: return "create /dev links";
    case ChildStage::kMountShm: return "mount /dev/shm";
    case ChildStage::kAttachEnvd: return "attach kiln-envd";
    case ChildStage::kPivotRoot: return "pivot_root";
    case ChildStage::kDetachOldRoot: return "detach old root";
    case ChildStage::kSession: return "setsid";
    case ChildStage::kSignals: return "reset signals";
    case ChildStage::kStdio: return "set up stdio";
    case ChildStage::kCloseFds: return "close descriptors";
    case ChildStage::kBoundingSet: return "drop bounding capabilities";
    case ChildStage::kNoNewPrivs: return "no_new_privs";
    case ChildStage::kSeccomp: return "load seccomp filter";
    case ChildStage::kCapabilities: return "set capabilities";
    case ChildStage::kExec: return "exec kiln-envd";
  }
  return "unknown stage";
}

namespace {

// The child's context: the plan and the socket failures go to.
struct Child {
  const ChildPlan& plan;

  [[noreturn]] void Fail(ChildStage stage, int err = errno) const {
    ChildReport report{stage, err};
    [[maybe_unused]] ssize_t n = send(plan.sync_fd, &report, sizeof report, MSG_NOSIGNAL);
    _exit(126);
  }
  void Check(bool ok, ChildStage stage) const {
    if (!ok) Fail(stage);
  }
};

// Waits for the parent's go message; it carries the idmapped lower layer as SCM_RIGHTS.
int ReceiveLower(const Child& c) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(c.plan.sync_fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n == 0) _exit(125);  // the parent gave up on this sandbox
  if (n < 0) c.Fail(ChildStage::kWaitParent);
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  if (cm == nullptr || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int))) {
    c.Fail(ChildStage::kWaitParent, EPROTO);
  }
  int fd;
  std::memcpy(&fd, CMSG_DATA(cm), sizeof fd);
  return fd;
}

// Waits for the parent's second message: the process is in all of the sandbox's cgroups.
void WaitForCgroups(const Child& c) {
  char byte = 0;
  ssize_t n;
  do {
    n = recv(c.plan.sync_fd, &byte, 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n == 0) _exit(125);  // the parent gave up on this sandbox
  if (n < 0) c.Fail(ChildStage::kWaitCgroups);
}

void BringUpLoopback(const Child& c) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  c.Check(s >= 0, ChildStage::kLoopback);
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  c.Check(ioctl(s, SIOCGIFFLAGS, &ifr) == 0, ChildStage::kLoopback);
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  c.Check(ioctl(s, SIOCSIFFLAGS, &ifr) == 0, ChildStage::kLoopback);
  close(s);
}

// mkdir that accepts an existing directory. Writes to the overlay only when the template
// lacks the directory.
bool EnsureDir(const char* path, mode_t mode) { return mkdir(path, mode) == 0 || errno == EEXIST; }

// /dev: a small tmpfs with bind mounts of the harmless host nodes, a private devpts and
// /dev/shm. Paths are relative to the new root (the cwd).
void BuildDev(const Child& c) {
  c.Check(EnsureDir("dev", 0755), ChildStage::kMountDev);
  c.Check(mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=1m,nr_inodes=256") == 0,
          ChildStage::kMountDev);
  static const char* const kNodes[][2] = {
      {"/dev/null", "dev/null"},     {"/dev/zero", "dev/zero"},
      {"/dev/full", "dev/full"},     {"/dev/random", "dev/random"},
      {"/dev/urandom", "dev/urandom"}, {"/dev/tty", "dev/tty"},
  };
  for (const auto& node : kNodes) {
    int fd = open(node[1], O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
    c.Check(fd >= 0, ChildStage::kDeviceNodes);
    close(fd);
    c.Check(mount(node[0], node[1], nullptr, MS_BIND, nullptr) == 0, ChildStage::kDeviceNodes);
  }
  c.Check(mkdir("dev/pts", 0755) == 0, ChildStage::kMountDevpts);
  c.Check(mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620,gid=5") == 0,
          ChildStage::kMountDevpts);
  static const char* const kLinks[][2] = {
      {"pts/ptmx", "dev/ptmx"},         {"/proc/self/fd", "dev/fd"},
      {"/proc/self/fd/0", "dev/stdin"}, {"/proc/self/fd/1", "dev/stdout"},
      {"/proc/self/fd/2", "dev/stderr"}, {"/proc/kcore", "dev/core"},
  };
  for (const auto& link : kLinks) {
    c.Check(symlink(link[0], link[1]) == 0, ChildStage::kDevLinks);
  }
  c.Check(mkdir("dev/shm", 01777) == 0, ChildStage::kMountShm);
  c.Check(mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") == 0,
          ChildStage::kMountShm);
}

// Docker's masked and read-only paths: host details (timers, scheduler, keys, firmware) are
// hidden and kernel knobs in /proc cannot be written. Paths the kernel lacks are skipped.
void MaskPaths(const Child& c) {
  static const char* const kHiddenFiles[] = {"proc/kcore", "proc/keys", "proc/timer_list",
                                             "proc/sched_debug", "proc/latency_stats"};
  for (const char* path : kHiddenFiles) {
    if (mount("/dev/null", path, nullptr, MS_BIND, nullptr) < 0 && errno != ENOENT) {
      c.Fail(ChildStage::kMaskPaths);
    }
  }
  static const char* const kHiddenDirs[] = {"proc/acpi", "proc/scsi", "sys/firmware"};
  for (const char* path : kHiddenDirs) {
    if (mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=0,nr_inodes=1") < 0 &&
        errno != ENOENT) {
      c.Fail(ChildStage::kMaskPaths);
    }
  }
  static const char* const kReadOnly[] = {"proc/bus", "proc/fs", "proc/irq", "proc/sys",
                                          "proc/sysrq-trigger"};
  for (const char* path : kReadOnly) {
    if (mount(path, path, nullptr, MS_BIND | MS_REC, nullptr) < 0) {
      if (errno == ENOENT) continue;
      c.Fail(ChildStage::kMaskPaths);
    }
    c.Check(mount(nullptr, path, nullptr,
                  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  nullptr) == 0,
            ChildStage::kMaskPaths);
  }
}

// Overlay root with /proc, /sys, /dev and the agent; the cwd ends up at the new root.
void BuildRoot(const Child& c, int lower_fd) {
  const ChildPlan& p = c.plan;
  // Nothing done from here on may propagate to the host's mount table.
  c.Check(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0,
          ChildStage::kMountPrivate);
  c.Check(move_mount(p.layer_fd, "", AT_FDCWD, p.mnt_layer, MOVE_MOUNT_F_EMPTY_PATH) == 0,
          ChildStage::kAttachLayer);
  c.Check(move_mount(lower_fd, "", AT_FDCWD, p.mnt_lower, MOVE_MOUNT_F_EMPTY_PATH) == 0,
          ChildStage::kAttachLower);
  close(lower_fd);
  c.Check(mount("overlay", p.mnt_root, "overlay", 0, p.overlay_options) == 0,
          ChildStage::kMountOverlay);
  c.Check(chdir(p.mnt_root) == 0, ChildStage::kMountOverlay);
  c.Check(EnsureDir("proc", 0555), ChildStage::kMountProc);
  c.Check(mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0,
          ChildStage::kMountProc);
  c.Check(EnsureDir("sys", 0555), ChildStage::kMountSys);
  c.Check(mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                nullptr) == 0,
          ChildStage::kMountSys);
  MaskPaths(c);
  BuildDev(c);
  c.Check(move_mount(p.envd_fd, "", AT_FDCWD, p.envd_target, MOVE_MOUNT_F_EMPTY_PATH) == 0,
          ChildStage::kAttachEnvd);
  if (p.interp_fd >= 0) {
    c.Check(move_mount(p.interp_fd, "", AT_FDCWD, p.interp_target, MOVE_MOUNT_F_EMPTY_PATH) == 0,
            ChildStage::kAttachEnvd);
  }
  // pivot_root(".", "."): the old root ends up stacked under the new one and is detached at
  // once, with everything of the host below it.
  c.Check(syscall(SYS_pivot_root, ".", ".") == 0, ChildStage::kPivotRoot);
  c.Check(umount2(".", MNT_DETACH) == 0, ChildStage::kDetachOldRoot);
  c.Check(chdir("/") == 0, ChildStage::kDetachOldRoot);
}

void ResetProcess(const Child& c) {
  c.Check(setsid() >= 0, ChildStage::kSession);
  sigset_t none;
  sigemptyset(&none);
  c.Check(sigprocmask(SIG_SETMASK, &none, nullptr) == 0, ChildStage::kSignals);
  // Ignored signals stay ignored across exec; kilnd may ignore SIGPIPE.
  struct sigaction dfl{};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
  }
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  c.Check(null_fd >= 0, ChildStage::kStdio);
  int out = c.plan.log_fd >= 0 ? c.plan.log_fd : null_fd;
  c.Check(dup2(null_fd, 0) == 0 && dup2(out, 1) == 1 && dup2(out, 2) == 2, ChildStage::kStdio);
  // Everything else closes at exec; the sync socket is already close-on-exec and tells the
  // parent the exec happened.
  c.Check(close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0, ChildStage::kCloseFds);
  umask(022);
}

void DropPrivileges(const Child& c) {
  const ChildPlan& p = c.plan;
  for (int cap = 0; cap <= p.cap_last; ++cap) {
    if ((p.keep_caps >> cap) & 1) continue;
    c.Check(prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0, ChildStage::kBoundingSet);
  }
  c.Check(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == 0,
          ChildStage::kBoundingSet);
  if (p.no_new_privs) {
    c.Check(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, ChildStage::kNoNewPrivs);
  }
  // Loaded while CAP_SYS_ADMIN (in the sandbox's user namespace) is still held: without
  // no_new_privs the kernel requires it.
  c.Check(linux_api::SeccompSetFilter(0, p.seccomp) == 0, ChildStage::kSeccomp);
  linux_api::CapSets caps{p.keep_caps, p.keep_caps, 0};  // inheritable empty, as in Docker
  c.Check(linux_api::Capset(caps) == 0, ChildStage::kCapabilities);
}

}  // namespace

void RunSandboxChild(const ChildPlan& plan) {
  Child c{plan};
  int lower_fd = ReceiveLower(c);
  // The maps are written: become root of the sandbox's user namespace (host uid <base>) and
  // drop kilnd's supplementary groups.
  // Raw system calls: glibc's setresuid() & co. in a multi-threaded process broadcast the
  // change to every thread (SIGSETXID) and wait for answers; after clone3 this child has one
  // thread but glibc still lists the parent's, so the wrappers would hang.
  c.Check(syscall(SYS_setresgid, 0, 0, 0) == 0 && syscall(SYS_setgroups, 0, nullptr) == 0 &&
              syscall(SYS_setresuid, 0, 0, 0) == 0,
          ChildStage::kCredentials);
  c.Check(sethostname(plan.hostname, std::strlen(plan.hostname)) == 0, ChildStage::kHostname);
  BringUpLoopback(c);
  BuildRoot(c, lower_fd);
  // The parent moves us into the v1 cgroups while we build the root (a cgroup v1 migration
  // waits for an RCU grace period: milliseconds on a busy host). Once there, the groups become
  // the cgroup namespace's root.
  WaitForCgroups(c);
  c.Check(unshare(CLONE_NEWCGROUP) == 0, ChildStage::kCgroupNamespace);
  ResetProcess(c);
  DropPrivileges(c);
  execve(plan.envd_path, plan.argv, plan.envp);
  c.Fail(ChildStage::kExec);
}

}  // namespace kiln::kilnd::ns
