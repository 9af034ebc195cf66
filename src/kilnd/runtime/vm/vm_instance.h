#pragma once

// One sandbox of the vm runtime: a QEMU guest restored from its template's snapshot.

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
#include "kilnd/net/netns.h"
#include "kilnd/runtime/runtime.h"
#include "kilnd/runtime/vm/guest_agent.h"
#include "kilnd/runtime/vm/qemu_process.h"
#include "kilnd/runtime/vm/template_snapshot.h"

namespace kiln::kilnd::vm {

// Everything one vm sandbox holds on the host; released in reverse order by Kill().
struct VmInstanceParts {
  std::string id;
  std::filesystem::path dir;      // <state>/sandboxes/<id>: overlay disk, QMP socket
  std::filesystem::path overlay;  // the guest's root disk (qcow2 on the template's disk)
  TemplateSnapshot snapshot;      // what it was restored from
  net::NetNamespace netns;
  std::unique_ptr<net::SandboxLink> link;  // null without a host network
  std::unique_ptr<cgroup::Cgroup> cgroup;
  std::unique_ptr<QemuProcess> qemu;
  uint32_t cpu_count = 1;
  uint64_t disk_total = 0;
  std::chrono::milliseconds timeout{10000};
};

// Thread-safe: one mutex serialises the methods (QMP takes one command at a time).
class VmInstance final : public Instance {
 public:
  explicit VmInstance(VmInstanceParts parts);
  ~VmInstance() override;

  const std::string& id() const override { return parts_.id; }
  pid_t init_pid() const override { return pid_; }  // QEMU's
  Result<UniqueFd> OpenSocket() override;
  std::string_view address() const override { return kGuestAddress; }
  Result<UniqueFd> OpenUdpSocket() override;
  std::string_view dns_address() const override { return kGuestGateway; }
  // Stops / continues the guest's CPUs (QMP stop / cont).
  Status Freeze() override;
  Status Thaw() override;
  Status SetEgress(const EgressPolicy& policy) override;
  // Saves the whole guest: `dest`/memory (QEMU's migration stream, RAM included), `dest`/disk.qcow2
  // (the root disk overlay) and `dest`/vm.json; the guest stays stopped.
  Status SnapshotFiles(const std::filesystem::path& dest) override;
  Result<InstanceStats> Stats() override;
  Result<UniqueFd> ExitFd() override;
  Status Kill() override;

 private:
  std::mutex mu_;
  VmInstanceParts parts_;
  pid_t pid_;
  bool killed_ = false;
};

}  // namespace kiln::kilnd::vm
