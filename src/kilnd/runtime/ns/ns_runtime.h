#pragma once

// The `ns` isolation runtime (DESIGN.md §4.1): each sandbox is a process tree in its own user,
// pid, mount, network, ipc, uts and cgroup namespaces, root mapped to an unprivileged host uid
// range, on an overlay of the template rootfs (idmapped, read-only) and a per-sandbox tmpfs,
// with seccomp, a reduced capability bounding set, no_new_privs and cgroup limits. Its init
// is kiln-envd.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "base/error.h"
#include "kilnd/cgroup/cgroup.h"
#include "kilnd/net/host_network.h"
#include "kilnd/runtime/ns/seccomp_policy.h"
#include "kilnd/runtime/runtime.h"

namespace kiln::kilnd::ns {

struct NsRuntimeOptions {
  // Instance name: the cgroup parent is "kiln-<name>"; several kilnd instances with distinct
  // names (and state dirs) do not collide. [A-Za-z0-9_-]+.
  std::string name = "kiln";
  // Host directory for this instance's runtime state: staging mount points (mnt/) and one
  // directory per sandbox (sandboxes/<id>/, holding the agent log). Default /run/kiln/<name>.
  // Must not contain ',', ':' or '\' (overlay mount options).
  std::filesystem::path state_dir;
  // Host network of the sandboxes (veth, NAT, egress policy); not owned, must outlive the
  // runtime's Create calls. Null: sandboxes have only a loopback interface.
  net::HostNetwork* network = nullptr;
  // Sandbox uid/gid 0..id_count-1 are host ids uid_base.. / gid_base.. (one range for all the
  // sandboxes of this instance).
  uint32_t uid_base = 100000;
  uint32_t gid_base = 100000;
  uint32_t id_count = 65536;
  // prctl(PR_SET_NO_NEW_PRIVS) for the agent and everything it starts. Stops setuid binaries
  // (sudo) from gaining privileges inside the sandbox.
  bool no_new_privs = true;
  // Agent stdout/stderr: <state_dir>/sandboxes/<id>/envd.log when true, else /dev/null.
  // SECURITY: off by default. The file is on the host and has no size limit; a process in the
  // sandbox can reopen it through /proc/1/fd/1 and fill the host's disk. For debugging.
  bool envd_log = false;
  uint16_t envd_port = 49983;
  // oom_score_adj of the sandbox's init (inherited by everything in it), set explicitly so a
  // sandbox never inherits kilnd's own (possibly negative, i.e. protected) value. Positive
  // values make the host's OOM killer prefer sandboxes over host services.
  int oom_score_adj = 0;
  // Bounds on waits for the kernel (freeze, kill) and for a child's setup.
  std::chrono::milliseconds timeout{10000};
};

// Thread-safe: Create may run on several worker threads at once. Instances are independent of
// the runtime once created (they may outlive it).
class NsRuntime final : public Runtime {
 public:
  // Detects the cgroup layout, compiles the seccomp filter and makes the state directories.
  // `cgroups` replaces the detected backend (tests).
  static Result<std::unique_ptr<NsRuntime>> Create(
      const NsRuntimeOptions& options, std::unique_ptr<cgroup::CgroupBackend> cgroups = nullptr);

  // Removes the instance's cgroup parent directories if no sandbox group is left in them.
  ~NsRuntime() override;

  std::string_view name() const override { return "ns"; }

  // kInvalidArgument for a bad id, a missing rootfs or agent; kAlreadyExists when a sandbox
  // with this id exists; a setup failure in the child reads "sandbox setup: mount overlay:
  // Invalid argument".
  Result<std::unique_ptr<Instance>> Create(const InstanceSpec& spec) override;

  // Kills and removes the cgroups a previous instance left, its sandbox directories and,
  // without a network, its nftables table (with one, HostNetwork::Setup already replaced it).
  Status CleanupStale() override;

  // At shutdown, once every sandbox is gone: removes the state directory's empty skeleton.
  // Not in the destructor, because another runtime (a test, a restarted kilnd) may share it.
  void RemoveStateDirIfEmpty();

  const NsRuntimeOptions& options() const { return options_; }
  const cgroup::CgroupBackend& cgroups() const { return *cgroups_; }

 private:
  NsRuntime(NsRuntimeOptions options, std::unique_ptr<cgroup::CgroupBackend> cgroups,
            SeccompProgram seccomp, int cap_last);

  NsRuntimeOptions options_;
  std::unique_ptr<cgroup::CgroupBackend> cgroups_;
  SeccompProgram seccomp_;
  int cap_last_;
  std::filesystem::path mnt_layer_, mnt_lower_, mnt_root_, sandboxes_dir_;
  // Held from creating a child's socket pair until the parent closed the child's end, so no
  // other child inherits it (which would delay the parent's EOF = "exec done").
  std::mutex clone_mu_;
};

}  // namespace kiln::kilnd::ns
