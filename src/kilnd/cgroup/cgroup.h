#pragma once

// Control groups of sandboxes (DESIGN.md §4.1). One kilnd instance keeps its sandboxes under a
// parent group of its own ("kiln-<name>"), one child group per sandbox. Two backends, chosen at
// runtime by CgroupBackend::Detect:
//   - v2: the unified hierarchy only (memory.max, pids.max, cpu.max, cgroup.freeze/kill);
//   - hybrid: cgroup v1 controllers for the limits (memory, pids, cpu, cpuacct) and the cgroup2
//     hierarchy (normally /sys/fs/cgroup/unified, no controllers) for freeze and kill.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::kilnd::cgroup {

// Resource limits of one group; 0 leaves that resource unlimited.
struct Limits {
  uint64_t memory_bytes = 0;
  uint32_t pids = 0;
  uint32_t cpu_millis = 0;  // CPU quota per 100 ms period; 1000 = one core
};

struct Stats {
  uint64_t cpu_usage_ns = 0;   // cumulative CPU time of every process in the group
  uint64_t memory_usage = 0;   // bytes charged, page cache included
  uint64_t memory_limit = 0;   // 0 = unlimited
  uint64_t memory_cache = 0;   // page cache and tmpfs/shmem part of memory_usage
};

// The group(s) of one sandbox. Destroying it kills what is left in it and removes the
// directories (best effort; use Kill() and Remove() to see errors). Not thread-safe: one owner.
class Cgroup {
 public:
  virtual ~Cgroup() = default;

  virtual const std::string& name() const = 0;

  virtual Status SetLimits(const Limits& limits) = 0;

  // Directory fd of the group in the cgroup2 hierarchy, for clone3(CLONE_INTO_CGROUP). The
  // group keeps ownership.
  virtual int clone_into_fd() const = 0;

  // Moves `pid` into the group. With `cloned_into` the process was created by clone3 with
  // CLONE_INTO_CGROUP(clone_into_fd()), so only hierarchies that did not cover are written.
  virtual Status Attach(pid_t pid, bool cloned_into = false) = 0;

  // Opens the group's cgroup.procs in every hierarchy (O_WRONLY | O_CLOEXEC; the v1 limit
  // controllers first, then cgroup2), for a child that joins the group itself before it execs:
  // writing "0" moves the writer (sys::SpawnSpec::cgroup_procs_fds). The caller owns the fds.
  virtual Result<std::vector<UniqueFd>> OpenProcsFiles() const = 0;

  // Freezes every process and returns once the kernel reports the group frozen
  // (cgroup.events "frozen 1"); kTimeout after `timeout`.
  virtual Status Freeze(std::chrono::milliseconds timeout) = 0;
  virtual Status Thaw() = 0;

  // SIGKILLs every process (cgroup.kill) and waits until the group is empty (cgroup.events
  // "populated 0"); kTimeout after `timeout`.
  virtual Status Kill(std::chrono::milliseconds timeout) = 0;

  virtual Result<Stats> ReadStats() = 0;

  // Removes the directories (idempotent). REQUIRES: the group is empty (Kill()).
  virtual Status Remove() = 0;
};

// Where the hierarchies are. Detect() reads them from /proc/self/mountinfo; tests may build
// one by hand.
struct Layout {
  // cgroup2 mount point (/sys/fs/cgroup on a v2 host, /sys/fs/cgroup/unified on a hybrid one).
  std::filesystem::path unified;
  // v1 mount points of the limit controllers; empty on a pure v2 host. cpu and cpuacct may be
  // the same directory (co-mounted).
  std::filesystem::path v1_memory;
  std::filesystem::path v1_pids;
  std::filesystem::path v1_cpu;
  std::filesystem::path v1_cpuacct;

  bool hybrid() const { return !v1_memory.empty(); }
};

// Creates and cleans up the sandbox groups of one kilnd instance. Thread-safe.
class CgroupBackend {
 public:
  virtual ~CgroupBackend() = default;

  // Finds the cgroup layout of this host: hybrid when memory is a v1 controller, else v2.
  // `parent` is the per-instance parent group, e.g. "kiln-main" (one path component).
  static Result<std::unique_ptr<CgroupBackend>> Detect(std::string_view parent);
  static Result<Layout> DetectLayout();
  static Result<std::unique_ptr<CgroupBackend>> ForLayout(const Layout& layout,
                                                          std::string_view parent);

  virtual std::string_view kind() const = 0;  // "v2" or "hybrid"
  virtual const std::string& parent() const = 0;

  // Creates the group <parent>/<name> in every hierarchy; kAlreadyExists if it exists.
  virtual Result<std::unique_ptr<Cgroup>> Create(std::string_view name) = 0;

  // Kills the processes of every group under the parent (left by a kilnd that died), waits
  // until each is empty, and removes them and the parent.
  virtual Status RemoveLeftovers() = 0;

  // Removes the parent directories if no group is left in them (best effort, for shutdown).
  virtual void RemoveParentIfEmpty() = 0;
};

}  // namespace kiln::kilnd::cgroup
