#pragma once

// The `vm` isolation runtime (DESIGN.md §4.2): every sandbox is a QEMU `microvm` guest with
// its own kernel, memory and devices, created by restoring a snapshot of its template's
// booted guest (kiln-envd already up) into a new, confined QEMU process.
//
// Per template (TemplateSnapshot, built on first use and cached): an ext4 image of the
// template rootfs, a small read-only agent disk (kiln-envd, kiln-interp), the disk's state
// at snapshot time (a qcow2 overlay that is read-only afterwards), the guest RAM as a file
// and QEMU's device state. Per sandbox: a network namespace joined to the host like an ns
// sandbox (HostNetwork::Attach) with a tap for the guest inside it (net::CreateGuestLink;
// every guest is 10.0.2.2 behind 10.0.2.1 in its own namespace), a qcow2 overlay on the
// template disk, a cgroup, and QEMU mapping the template RAM copy-on-write.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "base/error.h"
#include "kilnd/cgroup/cgroup.h"
#include "kilnd/net/host_network.h"
#include "kilnd/runtime/runtime.h"
#include "kilnd/runtime/vm/guest_kernel.h"
#include "kilnd/runtime/vm/template_snapshot.h"

namespace kiln::kilnd::vm {

struct VmRuntimeOptions {
  // Instance name: the cgroup parent is "kiln-<name>-vm". [A-Za-z0-9_-]+.
  std::string name = "kiln";
  // Per-sandbox state (overlay disk, QMP socket): <state_dir>/sandboxes/<id>/. On a disk, not
  // a tmpfs: the overlays hold what guests write to their root disks. QEMU's uid must be able
  // to pass through every directory above it (kiln adds o+x where missing), so it is not below
  // kilnd's private data dir. Default /var/lib/kiln-vm/<name>.
  std::filesystem::path state_dir;
  // Guest kernels and template snapshots (kept across restarts). Default /var/cache/kiln/vm.
  std::filesystem::path cache_dir = kDefaultVmCacheDir;
  // Template snapshots; default <cache_dir>/snapshots.
  std::filesystem::path snapshot_dir;
  // Host network of the sandboxes; not owned. Null: guests have no network beyond the agent.
  net::HostNetwork* network = nullptr;
  std::filesystem::path qemu = "/usr/bin/qemu-system-x86_64";
  // The static guest init (kiln-vminit) put into the initramfs.
  std::filesystem::path vminit;
  // "auto" (KVM when /dev/kvm can run standard guests, else TCG), "kvm" or "tcg".
  std::string accel = "auto";
  // QEMU runs as this unprivileged uid/gid (it owns the sandbox's overlay and its template's
  // RAM file, which QEMU 7.2 opens read-write even for a private mapping).
  uint32_t qemu_uid = 99000;
  uint32_t qemu_gid = 99000;
  uint32_t memory_mib = 512;  // guest RAM (part of the template snapshot)
  // The guest CPU model. "max" advertises every feature the accelerator emulates: with
  // QEMU's default qemu64, OpenBLAS (numpy) picks a kernel by CPU model and dies on an AVX
  // instruction the advertised features do not include (SIGILL under TCG).
  std::string cpu = "max";
  // Address space randomization of the guest's processes: "auto" (off under TCG, on under
  // KVM), "on" or "off". TCG caches a translation of guest code by its virtual address, so
  // with randomization every new process (each command's bash, its libc, ld.so) is translated
  // again: a command costs 2-4x the time and the code cache fills up (64 MiB) within a few
  // commands. Without it, processes map their code where the last one did and reuse the
  // translations. KVM has no such cache, so auto keeps randomization there.
  std::string guest_aslr = "auto";
  // Room for the sandbox's writes on its root disk, beyond the template's files.
  uint64_t disk_extra_bytes = 1ull << 30;
  // Guest console: "null", or a directory that gets <id>.log per sandbox (debugging only: a
  // guest could fill the disk through it). Template boots always log to their snapshot dir.
  std::string console = "null";
  std::chrono::milliseconds timeout{10000};  // QMP calls, kills, a restore
  std::chrono::seconds boot_timeout{180};     // a template's first boot to a ready agent
};

class VmRuntime final : public Runtime {
 public:
  // Finds the guest kernel (apt-get download into the cache once), builds the initramfs,
  // picks the accelerator, detects cgroups and makes the state directories.
  static Result<std::unique_ptr<VmRuntime>> Create(const VmRuntimeOptions& options);
  ~VmRuntime() override;

  std::string_view name() const override { return "vm"; }
  // Restores the template's snapshot (building it first when there is none for this
  // template, agent and kernel: a boot of a minute or more under TCG) into a new QEMU.
  Result<std::unique_ptr<Instance>> Create(const InstanceSpec& spec) override;
  Status CleanupStale() override;
  bool snapshots_keep_processes() const override { return true; }
  bool starts_services() const override { return true; }  // they run in the snapshot

  // Builds (or finds) the snapshot of a template ahead of its first sandbox.
  Status Prepare(const InstanceSpec& spec);

  // Removes the template snapshots in the snapshot dir that no running kilnd uses and no
  // paused sandbox needs (PruneTemplateSnapshots); call it after Prepare()ing the templates.
  // `paused_dir` holds this kilnd's paused sandboxes (<data-dir>/snapshots): their refs are
  // written first, so sandboxes paused by a kilnd that wrote none are kept too.
  Result<PruneReport> PruneSnapshots(const std::filesystem::path& paused_dir);

  // At shutdown, once every sandbox is gone: removes the empty state directories.
  void RemoveStateDirIfEmpty();

  const std::string& accel() const { return accel_; }
  bool guest_aslr() const;
  const GuestKernel& kernel() const { return kernel_; }
  const VmRuntimeOptions& options() const { return options_; }

  struct Shared;  // what instances keep of the runtime (kernel paths, cgroups)

 private:
  VmRuntime(VmRuntimeOptions options, GuestKernel kernel, std::string accel,
            std::shared_ptr<Shared> shared);
  Result<std::shared_ptr<const TemplateSnapshot>> SnapshotFor(const InstanceSpec& spec);

  VmRuntimeOptions options_;
  GuestKernel kernel_;
  std::string accel_;
  std::shared_ptr<Shared> shared_;
  std::mutex snapshots_mu_;  // serialises snapshot builds
  std::map<std::string, std::shared_ptr<const TemplateSnapshot>> snapshots_;  // by key
  // Share locks on every template snapshot this runtime restored from (also those of paused
  // sandboxes resumed), so no other kilnd prunes them while this one runs.
  std::map<std::filesystem::path, UniqueFd> held_;
};

// "kvm" when /dev/kvm can run standard guests here, else "tcg", with the reason.
std::pair<std::string, std::string> DetectAccelerator();

}  // namespace kiln::kilnd::vm
