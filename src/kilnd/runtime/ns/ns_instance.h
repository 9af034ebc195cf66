#pragma once

// One sandbox of the ns runtime and the handle of its init process.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "base/error.h"
#include "base/unique_fd.h"
#include "kilnd/cgroup/cgroup.h"
#include "kilnd/net/host_network.h"
#include "kilnd/runtime/runtime.h"

namespace kiln::kilnd::ns {

// A child process held through a pidfd. Unless Reap() ran, the destructor SIGKILLs and reaps
// it. Move-only.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  ChildProcess(ChildProcess&& o) noexcept;
  ChildProcess& operator=(ChildProcess&& o) noexcept;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }
  // Whether the process has exited (not reaped yet); false after Reap().
  bool Exited() const;
  void Kill();
  // Waits up to `timeout` for the exit and collects the status; idempotent. kTimeout leaves
  // the process held (a process stuck in the kernel cannot block kilnd forever).
  Status Reap(std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
};

// Everything one sandbox holds on the host; the destructor releases it all (Kill()).
struct NsInstanceParts {
  std::string id;
  ChildProcess init;
  std::unique_ptr<cgroup::Cgroup> cgroup;
  UniqueFd netns;                            // for OpenSocket
  std::unique_ptr<net::SandboxLink> link;    // null without a host network
  UniqueFd layer;                            // the tmpfs mount (upper/, work/)
  UniqueFd upper;                            // dir fd of upper/ in it
  std::filesystem::path sandbox_dir;         // host dir (agent log); removed on Kill
  uint32_t cpu_count = 1;
  std::chrono::milliseconds timeout{10000};
};

// Thread-safe: every method may be called from any thread (one mutex).
class NsInstance final : public Instance {
 public:
  explicit NsInstance(NsInstanceParts parts);
  ~NsInstance() override;

  const std::string& id() const override { return parts_.id; }
  pid_t init_pid() const override { return init_pid_; }
  Result<UniqueFd> OpenSocket() override;
  Result<UniqueFd> OpenUdpSocket() override;
  Status Freeze() override;
  Status Thaw() override;
  Status SetEgress(const EgressPolicy& policy) override;
  Status SnapshotFiles(const std::filesystem::path& dest) override;
  Result<InstanceStats> Stats() override;
  Result<UniqueFd> ExitFd() override;
  Status Kill() override;

 private:
  Status CheckAlive() const;  // REQUIRES: mu_ held

  std::mutex mu_;
  NsInstanceParts parts_;
  pid_t init_pid_;
  bool killed_ = false;
};

}  // namespace kiln::kilnd::ns
