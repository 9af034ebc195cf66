// Backend for hosts with the unified cgroup2 hierarchy only.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>

#include "kilnd/cgroup/cgroup_fs.h"
#include "kilnd/cgroup/unified_group.h"

namespace kiln::kilnd::cgroup::internal {
namespace {

bool HasWord(std::string_view text, std::string_view word) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find_first_of(" \n", pos);
    if (end == std::string_view::npos) end = text.size();
    if (text.substr(pos, end - pos) == word) return true;
    pos = end + 1;
  }
  return false;
}

class V2Group final : public UnifiedGroup {
 public:
  using UnifiedGroup::UnifiedGroup;

  Status SetLimits(const Limits& limits) override {
    const auto& dir = unified_dir();
    int fd = unified_fd();
    if (limits.memory_bytes != 0) {
      KILN_TRY(WriteAt(fd, dir, "memory.max", std::to_string(limits.memory_bytes)));
      // No swapping past the limit; the file is missing when the kernel has no swap support.
      auto swap = WriteAt(fd, dir, "memory.swap.max", "0");
      if (!swap && swap.error().sys_errno() != ENOENT) return swap;
    }
    if (limits.pids != 0) KILN_TRY(WriteAt(fd, dir, "pids.max", std::to_string(limits.pids)));
    if (limits.cpu_millis != 0) {
      uint64_t quota_us = uint64_t{limits.cpu_millis} * 100;  // per 100 ms period
      KILN_TRY(WriteAt(fd, dir, "cpu.max", std::to_string(quota_us) + " 100000"));
    }
    return {};
  }

  Status Attach(pid_t pid, bool cloned_into) override {
    if (cloned_into) return {};
    return WriteAt(unified_fd(), unified_dir(), "cgroup.procs", std::to_string(pid));
  }

  Result<Stats> ReadStats() override {
    const auto& dir = unified_dir();
    int fd = unified_fd();
    Stats s;
    KILN_ASSIGN_OR_RETURN(std::string cpu, ReadAt(fd, dir, "cpu.stat"));
    s.cpu_usage_ns = KeyedValue(cpu, "usage_usec").value_or(0) * 1000;
    auto current = ReadAt(fd, dir, "memory.current");
    if (!current) {
      // Without the memory controller there is nothing more to report.
      if (current.error().sys_errno() == ENOENT) return s;
      return std::unexpected(std::move(current).error());
    }
    s.memory_usage = ParseNumber(*current).value_or(0);
    KILN_ASSIGN_OR_RETURN(std::string max, ReadAt(fd, dir, "memory.max"));
    s.memory_limit = ParseNumber(max).value_or(0);
    KILN_ASSIGN_OR_RETURN(std::string stat, ReadAt(fd, dir, "memory.stat"));
    s.memory_cache = KeyedValue(stat, "file").value_or(0);
    return s;
  }
};

class V2Backend final : public CgroupBackend {
 public:
  V2Backend(std::filesystem::path root, std::string parent)
      : root_(std::move(root)), parent_(std::move(parent)) {}

  std::string_view kind() const override { return "v2"; }
  const std::string& parent() const override { return parent_; }

  Result<std::unique_ptr<Cgroup>> Create(std::string_view name) override {
    KILN_TRY(CheckName(name, "group"));
    KILN_TRY(EnsureParent());
    auto made = MakeGroupDirs({root_}, parent_, name);
    if (!made && made.error().sys_errno() == ENOENT) {
      // The parent was removed behind our back (RemoveParentIfEmpty elsewhere): make it again.
      {
        std::lock_guard lock(mu_);
        parent_ready_ = false;
      }
      KILN_TRY(EnsureParent());
      made = MakeGroupDirs({root_}, parent_, name);
    }
    if (!made) return std::unexpected(std::move(made).error());
    auto dirs = std::move(*made);
    auto fd = OpenDir(dirs[0]);
    if (!fd) {
      rmdir(dirs[0].c_str());
      return std::unexpected(std::move(fd).error());
    }
    return std::make_unique<V2Group>(std::string(name), dirs[0], std::move(*fd));
  }

  Status RemoveLeftovers() override {
    std::lock_guard lock(mu_);
    parent_ready_ = false;
    return RemoveLeftoverGroups(root_, {}, parent_);
  }

  void RemoveParentIfEmpty() override {
    std::lock_guard lock(mu_);
    parent_ready_ = false;
    RemoveParentDirs({root_}, parent_);
  }

 private:
  // Creates the parent and delegates to it the controllers the root offers (memory, pids,
  // cpu). A controller the host lacks is left out; SetLimits then names the missing file.
  Status EnsureParent() {
    std::lock_guard lock(mu_);
    if (parent_ready_) return {};
    std::filesystem::path dir = root_ / parent_;
    if (mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) return FailErrno("mkdir " + dir.string());
    KILN_ASSIGN_OR_RETURN(UniqueFd fd, OpenDir(dir));
    KILN_ASSIGN_OR_RETURN(std::string available, ReadAt(fd.get(), dir, "cgroup.controllers"));
    for (std::string_view c : {"memory", "pids", "cpu"}) {
      if (HasWord(available, c)) KILN_TRY(WriteAt(fd.get(), dir, "cgroup.subtree_control", "+" + std::string(c)));
    }
    parent_ready_ = true;
    return {};
  }

  std::filesystem::path root_;
  std::string parent_;
  std::mutex mu_;
  bool parent_ready_ = false;
};

}  // namespace

std::unique_ptr<CgroupBackend> MakeV2Backend(const Layout& layout, std::string parent) {
  return std::make_unique<V2Backend>(layout.unified, std::move(parent));
}

}  // namespace kiln::kilnd::cgroup::internal
