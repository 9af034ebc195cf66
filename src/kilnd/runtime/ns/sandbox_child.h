#pragma once

// What a sandbox's first process does between clone3 and exec of kiln-envd: wait for the
// parent (uid/gid maps, idmapped lower layer), build the root file system, wait until the
// parent has put it into its cgroups, drop privileges, load seccomp, exec. Everything it needs is prepared by the parent in a
// ChildPlan; the child only makes system calls (no allocation, no locks, no logging) and
// reports a failure as a fixed-size ChildReport on its sync socket.

#include <linux/filter.h>

#include <cstdint>

namespace kiln::kilnd::ns {

enum class ChildStage : int32_t {
  kWaitParent = 1,
  kWaitCgroups,
  kCredentials,
  kCgroupNamespace,
  kHostname,
  kLoopback,
  kMountPrivate,
  kAttachLayer,
  kAttachLower,
  kMountOverlay,
  kMountProc,
  kMountSys,
  kMaskPaths,
  kMountDev,
  kDeviceNodes,
  kMountDevpts,
  kDevLinks,
  kMountShm,
  kAttachEnvd,
  kPivotRoot,
  kDetachOldRoot,
  kSession,
  kSignals,
  kStdio,
  kCloseFds,
  kBoundingSet,
  kNoNewPrivs,
  kSeccomp,
  kCapabilities,
  kExec,
};

// "mount overlay", "pivot_root", ...: the stage in an error message.
const char* ChildStageName(ChildStage stage);

// Sent by a child that failed; a child that reached exec sends nothing (its end of the sync
// socket is close-on-exec, so the parent reads EOF).
struct ChildReport {
  ChildStage stage;
  int32_t err;
};

// Everything the child reads. All pointers stay valid in the child's copy of the parent's
// memory (clone without CLONE_VM); descriptors are inherited at clone.
struct ChildPlan {
  int sync_fd = -1;   // child's end of the SOCK_SEQPACKET pair (CLOEXEC)
  int layer_fd = -1;  // detached tmpfs (fsmount) holding upper/ and work/
  int envd_fd = -1;   // detached read-only bind mount of the agent binary (open_tree)
  int interp_fd = -1;  // the same for kiln-interp; -1: none
  int log_fd = -1;    // agent stdout/stderr; -1 = /dev/null

  const char* hostname = "sandbox";
  // Staging mount points (absolute host paths, same for every sandbox: each child mounts on
  // them only inside its own mount namespace).
  const char* mnt_layer = nullptr;
  const char* mnt_lower = nullptr;
  const char* mnt_root = nullptr;
  const char* overlay_options = nullptr;  // "lowerdir=...,upperdir=...,workdir=...,userxattr"
  const char* envd_target = nullptr;       // relative to the new root: ".kiln/envd"
  const char* envd_path = nullptr;         // absolute inside the sandbox: "/.kiln/envd"
  const char* interp_target = nullptr;     // ".kiln/interp" (with interp_fd)
  char* const* argv = nullptr;
  char* const* envp = nullptr;

  const sock_fprog* seccomp = nullptr;
  uint64_t keep_caps = 0;  // bounding, permitted and effective set (inheritable: empty)
  int cap_last = 40;       // /proc/sys/kernel/cap_last_cap
  bool no_new_privs = true;
};

// Runs in the cloned child; never returns.
[[noreturn]] void RunSandboxChild(const ChildPlan& plan);

}  // namespace kiln::kilnd::ns
