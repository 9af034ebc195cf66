#pragma once

// The snapshot of a template's booted guest that every vm sandbox of it is restored from.
//
// <snapshot root>/<template>-<key hash>/   (the root is normally <vm cache>/snapshots)
//   root.ext4     the template rootfs as an ext4 image (read-only after the build)
//   agent.ext4    kiln-envd and kiln-interp, mounted read-only at /.kiln in the guest
//   disk.qcow2    the root disk's state at snapshot time (overlay of root.ext4; read-only)
//   ram           the guest's RAM (QEMU maps it copy-on-write in every sandbox)
//   state         QEMU's device state (migration stream without the RAM)
//   console.log   the template boot's serial console
//   snapshot.json the key it was built for; written last, so a directory without it is an
//                 interrupted build and is rebuilt. A kilnd that uses the snapshot holds a
//                 shared flock on it.
//   refs/         one file per paused sandbox that needs the snapshot (its disk is an overlay
//                 on disk.qcow2): the path of the sandbox's pause directory
// A key covers everything the guest's memory depends on: the template's rootfs build, the
// agent binaries, kernel, initramfs, accelerator, guest RAM and disk size.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "kilnd/runtime/runtime.h"
#include "kilnd/runtime/vm/microvm.h"

namespace kiln::kilnd::vm {

struct TemplateSnapshot {
  std::filesystem::path dir;
  std::filesystem::path root_image, agent_image, disk, ram, state;
  uint32_t memory_mib = 0;
};

struct SnapshotBuild {
  std::string template_name;          // for the directory name and logs
  std::filesystem::path rootfs;       // the template rootfs
  std::filesystem::path envd_binary;
  std::filesystem::path interp_binary;  // may be empty
  std::filesystem::path snapshot_root;  // holds one directory per snapshot
  MicrovmConfig machine;              // qemu, accel, kernel, initrd, cmdline, cpus, memory_mib
  std::string kernel_release;
  std::string initrd_hash;            // of machine.initrd's content
  // machine.cmdline without what may vary between runs of one host and does not shape the
  // guest's memory (tsc_early_khz from /proc/cpuinfo).
  std::string cmdline_key;
  uint64_t disk_extra_bytes = 1ull << 30;
  // The template's service, started (as root, through the agent) before the snapshot, so
  // every sandbox has it running and ready (kiln-interp with its kernels).
  std::optional<InstanceSpec::Service> service;
  uid_t qemu_uid = 0;  // owner of the RAM file (QEMU opens it read-write)
  gid_t qemu_gid = 0;
  std::chrono::seconds boot_timeout{180};
  std::chrono::milliseconds qmp_timeout{10000};
};

// The files of the snapshot in `dir`.
TemplateSnapshot SnapshotLayout(const std::filesystem::path& dir, uint32_t memory_mib);

// 64-bit FNV-1a (cache keys, not security).
uint64_t Fnv1a(std::string_view text);

// The key of a build: a text that changes whenever the snapshot would differ.
Result<std::string> SnapshotKey(const SnapshotBuild& build);

// The snapshot for `build`: the cached one when its key matches, else a new one made by
// booting the template (kiln-envd up and answering /health, the service ready) and saving it. Not thread-safe
// for one cache directory (the runtime serialises calls; a file lock guards against another
// kilnd).
// With `hold`, it receives HoldTemplateSnapshot's lock on the result, taken before another
// kilnd could prune it.
Result<TemplateSnapshot> EnsureTemplateSnapshot(const SnapshotBuild& build, UniqueFd* hold = nullptr);

// A shared lock on the snapshot in `dir` for as long as the descriptor is open:
// PruneTemplateSnapshots leaves a held snapshot alone. kNotFound when it is not a complete one.
Result<UniqueFd> HoldTemplateSnapshot(const std::filesystem::path& dir);

// Records that the paused sandbox in `pause_dir` needs the snapshot in `dir`, also while no
// kilnd runs: refs/<hash of pause_dir> holds the path. A ref whose pause directory is gone, or
// names another snapshot in its vm.json, is stale.
Status AddTemplateSnapshotRef(const std::filesystem::path& dir,
                              const std::filesystem::path& pause_dir);

// The file a paused vm sandbox's directory holds next to its memory and disk:
// {"snapshot": <template snapshot dir>, "memory_mib": N}.
inline constexpr char kPausedVmInfo[] = "vm.json";

struct PausedVmInfo {
  std::filesystem::path snapshot;  // the template snapshot its memory and disk build on
  uint32_t memory_mib = 0;         // 0: not recorded
};

Status WritePausedVmInfo(const std::filesystem::path& pause_dir, const PausedVmInfo& info);
// kNotFound when `pause_dir` has no vm.json (not a vm sandbox's), kInvalidArgument when it is
// malformed.
Result<PausedVmInfo> ReadPausedVmInfo(const std::filesystem::path& pause_dir);

// The template name in a snapshot directory's name ("<template>-<16 hex digits>"), or nothing
// when `dir_name` is not one.
std::optional<std::string> SnapshotTemplateName(std::string_view dir_name);

struct PruneReport {
  std::vector<std::filesystem::path> removed;
  uint64_t bytes = 0;  // their disk usage
};

// Removes the snapshots of `templates` under `root` that no kilnd holds and no paused sandbox
// refers to (those of older agent binaries, kernels or template builds: GBs each), and
// interrupted builds. Snapshots of other templates stay (another kilnd may use them). Runs
// under the lock that builds take, so it never sees one half made.
Result<PruneReport> PruneTemplateSnapshots(const std::filesystem::path& root,
                                           const std::vector<std::string>& templates);

// The kiln.* kernel parameters of every guest: agent disk, network, DNS, hostname.
std::string GuestCmdline();

}  // namespace kiln::kilnd::vm
