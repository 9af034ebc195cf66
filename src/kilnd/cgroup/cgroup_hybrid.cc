// Backend for hybrid hosts: limits through the v1 controllers memory, pids, cpu and cpuacct;
// freeze and kill through the (controller-less) cgroup2 hierarchy.

#include <fcntl.h>
#include <unistd.h>

#include "kilnd/cgroup/cgroup_fs.h"
#include "kilnd/cgroup/unified_group.h"

namespace kiln::kilnd::cgroup::internal {
namespace {

struct V1Dirs {
  std::filesystem::path memory, pids, cpu, cpuacct;
};

Status WritePath(const std::filesystem::path& dir, const char* file, std::string_view value) {
  return WriteAt(AT_FDCWD, dir, (dir / file).c_str(), value);
}

Result<std::string> ReadPath(const std::filesystem::path& dir, const char* file) {
  return ReadAt(AT_FDCWD, dir, (dir / file).c_str());
}

class HybridGroup final : public UnifiedGroup {
 public:
  HybridGroup(std::string name, std::filesystem::path unified_dir, UniqueFd unified_fd,
              V1Dirs v1)
      : UnifiedGroup(std::move(name), std::move(unified_dir), std::move(unified_fd)),
        v1_(std::move(v1)) {
    extra_dirs_ = {v1_.memory, v1_.pids, v1_.cpu};
    if (v1_.cpuacct != v1_.cpu) extra_dirs_.push_back(v1_.cpuacct);
  }

  Status SetLimits(const Limits& limits) override {
    if (limits.memory_bytes != 0) {
      std::string bytes = std::to_string(limits.memory_bytes);
      KILN_TRY(WritePath(v1_.memory, "memory.limit_in_bytes", bytes));
      // memory+swap limit = memory limit: no swapping past it. Missing without swap support.
      auto memsw = WritePath(v1_.memory, "memory.memsw.limit_in_bytes", bytes);
      if (!memsw && memsw.error().sys_errno() != ENOENT) return memsw;
    }
    if (limits.pids != 0) KILN_TRY(WritePath(v1_.pids, "pids.max", std::to_string(limits.pids)));
    if (limits.cpu_millis != 0) {
      KILN_TRY(WritePath(v1_.cpu, "cpu.cfs_period_us", "100000"));
      KILN_TRY(WritePath(v1_.cpu, "cpu.cfs_quota_us",
                         std::to_string(uint64_t{limits.cpu_millis} * 100)));
    }
    return {};
  }

  Status Attach(pid_t pid, bool cloned_into) override {
    std::string p = std::to_string(pid);
    for (const auto& dir : extra_dirs_) KILN_TRY(WritePath(dir, "cgroup.procs", p));
    if (!cloned_into) KILN_TRY(WriteAt(unified_fd(), unified_dir(), "cgroup.procs", p));
    return {};
  }

  Result<Stats> ReadStats() override {
    Stats s;
    KILN_ASSIGN_OR_RETURN(std::string usage, ReadPath(v1_.cpuacct, "cpuacct.usage"));
    s.cpu_usage_ns = ParseNumber(usage).value_or(0);
    KILN_ASSIGN_OR_RETURN(std::string mem, ReadPath(v1_.memory, "memory.usage_in_bytes"));
    s.memory_usage = ParseNumber(mem).value_or(0);
    KILN_ASSIGN_OR_RETURN(std::string limit, ReadPath(v1_.memory, "memory.limit_in_bytes"));
    uint64_t l = ParseNumber(limit).value_or(0);
    s.memory_limit = l >= (uint64_t{1} << 62) ? 0 : l;  // "unlimited" is PAGE_COUNTER_MAX
    KILN_ASSIGN_OR_RETURN(std::string stat, ReadPath(v1_.memory, "memory.stat"));
    s.memory_cache = KeyedValue(stat, "cache").value_or(0);
    return s;
  }

 private:
  V1Dirs v1_;
};

class HybridBackend final : public CgroupBackend {
 public:
  HybridBackend(const Layout& layout, std::string parent)
      : layout_(layout), parent_(std::move(parent)) {
    v1_roots_ = {layout_.v1_memory, layout_.v1_pids, layout_.v1_cpu};
    if (layout_.v1_cpuacct != layout_.v1_cpu) v1_roots_.push_back(layout_.v1_cpuacct);
  }

  std::string_view kind() const override { return "hybrid"; }
  const std::string& parent() const override { return parent_; }

  Result<std::unique_ptr<Cgroup>> Create(std::string_view name) override {
    KILN_TRY(CheckName(name, "group"));
    std::vector<std::filesystem::path> roots = {layout_.unified};
    roots.insert(roots.end(), v1_roots_.begin(), v1_roots_.end());
    KILN_ASSIGN_OR_RETURN(auto dirs, MakeGroupDirs(roots, parent_, name));
    auto fd = OpenDir(dirs[0]);
    if (!fd) {
      for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) rmdir(it->c_str());
      return std::unexpected(std::move(fd).error());
    }
    std::string n(name);
    V1Dirs v1{layout_.v1_memory / parent_ / n, layout_.v1_pids / parent_ / n,
              layout_.v1_cpu / parent_ / n, layout_.v1_cpuacct / parent_ / n};
    return std::make_unique<HybridGroup>(n, dirs[0], std::move(*fd), std::move(v1));
  }

  Status RemoveLeftovers() override {
    return RemoveLeftoverGroups(layout_.unified, v1_roots_, parent_);
  }

  void RemoveParentIfEmpty() override {
    RemoveParentDirs(v1_roots_, parent_);
    RemoveParentDirs({layout_.unified}, parent_);
  }

 private:
  Layout layout_;
  std::string parent_;
  std::vector<std::filesystem::path> v1_roots_;
};

}  // namespace

std::unique_ptr<CgroupBackend> MakeHybridBackend(const Layout& layout, std::string parent) {
  return std::make_unique<HybridBackend>(layout, std::move(parent));
}

}  // namespace kiln::kilnd::cgroup::internal
