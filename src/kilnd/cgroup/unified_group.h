#pragma once

// The part of a sandbox group that lives in the cgroup2 hierarchy, common to both backends:
// clone3 target, freeze (cgroup.freeze) and kill (cgroup.kill), waits on cgroup.events.

#include <filesystem>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "kilnd/cgroup/cgroup.h"

namespace kiln::kilnd::cgroup::internal {

class UnifiedGroup : public Cgroup {
 public:
  UnifiedGroup(std::string name, std::filesystem::path unified_dir, UniqueFd unified_fd);
  // Kills what is left and removes the directories; errors are logged.
  ~UnifiedGroup() override;

  const std::string& name() const override { return name_; }
  int clone_into_fd() const override { return unified_fd_.get(); }
  Status Freeze(std::chrono::milliseconds timeout) override;
  Status Thaw() override;
  Status Kill(std::chrono::milliseconds timeout) override;
  Status Remove() override;
  Result<std::vector<UniqueFd>> OpenProcsFiles() const override;

 protected:
  // Directories of the other hierarchies (v1), removed after the unified one.
  std::vector<std::filesystem::path> extra_dirs_;
  const std::filesystem::path& unified_dir() const { return unified_dir_; }
  int unified_fd() const { return unified_fd_.get(); }

 private:
  std::string name_;
  std::filesystem::path unified_dir_;
  UniqueFd unified_fd_;
  bool removed_ = false;
};

// Creates <root>/<parent>/<name> in each root (all or nothing). kAlreadyExists if the group
// exists in the first root.
Result<std::vector<std::filesystem::path>> MakeGroupDirs(
    const std::vector<std::filesystem::path>& roots, const std::string& parent,
    std::string_view name);

// Checks a parent or group name: one path component, [A-Za-z0-9._-], not "." or "..".
Status CheckName(std::string_view name, std::string_view what);

// Kills and removes every group under <unified>/<parent> and <v1 root>/<parent>, then the
// parent directories themselves.
Status RemoveLeftoverGroups(const std::filesystem::path& unified,
                            const std::vector<std::filesystem::path>& v1_roots,
                            const std::string& parent);

// rmdir of <root>/<parent> for each root; errors (not empty, gone) are ignored.
void RemoveParentDirs(const std::vector<std::filesystem::path>& roots, const std::string& parent);

std::unique_ptr<CgroupBackend> MakeV2Backend(const Layout& layout, std::string parent);
std::unique_ptr<CgroupBackend> MakeHybridBackend(const Layout& layout, std::string parent);

}  // namespace kiln::kilnd::cgroup::internal
