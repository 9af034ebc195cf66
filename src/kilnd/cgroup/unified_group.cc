#include "kilnd/cgroup/unified_group.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>

#include "base/log.h"
#include "kilnd/cgroup/cgroup_fs.h"

namespace kiln::kilnd::cgroup::internal {
namespace {

constexpr auto kCleanupTimeout = std::chrono::seconds(10);

// Names of the subdirectories of `dir` (none when it does not exist).
Result<std::vector<std::string>> SubDirs(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return out;
    return FailErrno("opendir " + dir.string());
  }
  while (dirent* e = readdir(d)) {
    std::string_view n = e->d_name;
    if (e->d_type == DT_DIR && n != "." && n != "..") out.emplace_back(n);
  }
  closedir(d);
  return out;
}

}  // namespace

UnifiedGroup::UnifiedGroup(std::string name, std::filesystem::path unified_dir,
                           UniqueFd unified_fd)
    : name_(std::move(name)),
      unified_dir_(std::move(unified_dir)),
      unified_fd_(std::move(unified_fd)) {}

UnifiedGroup::~UnifiedGroup() {
  if (removed_) return;
  auto killed = Kill(kCleanupTimeout);
  if (!killed) {
    KILN_LOG(Warn, "cgroup kill failed", {"cgroup", name_}, {"error", killed.error().message()});
  }
  auto removed = Remove();
  if (!removed) {
    KILN_LOG(Warn, "cgroup remove failed", {"cgroup", name_},
             {"error", removed.error().message()});
  }
}

Result<std::vector<UniqueFd>> UnifiedGroup::OpenProcsFiles() const {
  std::vector<UniqueFd> out;
  for (const auto& dir : extra_dirs_) {
    std::filesystem::path file = dir / "cgroup.procs";
    UniqueFd fd(open(file.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return FailErrno("open " + file.string());
    out.push_back(std::move(fd));
  }
  UniqueFd fd(openat(unified_fd_.get(), "cgroup.procs", O_WRONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + (unified_dir_ / "cgroup.procs").string());
  out.push_back(std::move(fd));
  return out;
}

Status UnifiedGroup::Freeze(std::chrono::milliseconds timeout) {
  KILN_TRY(WriteAt(unified_fd_.get(), unified_dir_, "cgroup.freeze", "1"));
  return WaitEvent(unified_fd_.get(), unified_dir_, "frozen", 1, Clock::now() + timeout);
}

Status UnifiedGroup::Thaw() {
  KILN_TRY(WriteAt(unified_fd_.get(), unified_dir_, "cgroup.freeze", "0"));
  return WaitEvent(unified_fd_.get(), unified_dir_, "frozen", 0,
                   Clock::now() + std::chrono::seconds(5));
}

Status UnifiedGroup::Kill(std::chrono::milliseconds timeout) {
  if (removed_) return {};
  KILN_TRY(WriteAt(unified_fd_.get(), unified_dir_, "cgroup.kill", "1"));
  return WaitEvent(unified_fd_.get(), unified_dir_, "populated", 0, Clock::now() + timeout);
}

Status UnifiedGroup::Remove() {
  if (removed_) return {};
  auto deadline = Clock::now() + kCleanupTimeout;
  KILN_TRY(RemoveDir(unified_dir_, deadline));
  for (const auto& dir : extra_dirs_) KILN_TRY(RemoveDir(dir, deadline));
  removed_ = true;
  unified_fd_.reset();
  return {};
}

Status CheckName(std::string_view name, std::string_view what) {
  bool ok = !name.empty() && name.size() <= 200 && name != "." && name != ".." &&
            std::all_of(name.begin(), name.end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || c == '.';
            });
  if (!ok) {
    return Fail(Errc::kInvalidArgument, "invalid cgroup " + std::string(what) + " name \"" +
                                            log::Sanitize(name) + "\"");
  }
  return {};
}

Result<std::vector<std::filesystem::path>> MakeGroupDirs(
    const std::vector<std::filesystem::path>& roots, const std::string& parent,
    std::string_view name) {
  std::vector<std::filesystem::path> made;
  auto undo = [&made] {
    for (auto it = made.rbegin(); it != made.rend(); ++it) rmdir(it->c_str());
  };
  for (const auto& root : roots) {
    std::filesystem::path parent_dir = root / parent;
    if (mkdir(parent_dir.c_str(), 0755) < 0 && errno != EEXIST) {
      auto err = FailErrno("mkdir " + parent_dir.string());
      undo();
      return err;
    }
    std::filesystem::path dir = parent_dir / std::string(name);
    if (mkdir(dir.c_str(), 0755) < 0) {
      auto err = FailErrno("mkdir " + dir.string());
      undo();
      return err;
    }
    made.push_back(std::move(dir));
  }
  return made;
}

void RemoveParentDirs(const std::vector<std::filesystem::path>& roots, const std::string& parent) {
  for (const auto& root : roots) rmdir((root / parent).c_str());
}

Status RemoveLeftoverGroups(const std::filesystem::path& unified,
                            const std::vector<std::filesystem::path>& v1_roots,
                            const std::string& parent) {
  auto deadline = Clock::now() + kCleanupTimeout;
  std::filesystem::path unified_parent = unified / parent;
  KILN_ASSIGN_OR_RETURN(auto groups, SubDirs(unified_parent));
  for (const auto& g : groups) {
    std::filesystem::path dir = unified_parent / g;
    KILN_ASSIGN_OR_RETURN(UniqueFd fd, OpenDir(dir));
    KILN_TRY(WriteAt(fd.get(), dir, "cgroup.freeze", "0"));
    KILN_TRY(WriteAt(fd.get(), dir, "cgroup.kill", "1"));
    KILN_TRY(WaitEvent(fd.get(), dir, "populated", 0, deadline));
    KILN_TRY(RemoveDir(dir, deadline));
  }
  for (const auto& root : v1_roots) {
    std::filesystem::path v1_parent = root / parent;
    KILN_ASSIGN_OR_RETURN(auto v1_groups, SubDirs(v1_parent));
    for (const auto& g : v1_groups) {
      // Normally empty by now (their tasks were in the unified group too).
      KILN_TRY(KillListedTasks(v1_parent / g, deadline));
      KILN_TRY(RemoveDir(v1_parent / g, deadline));
    }
    KILN_TRY(RemoveDir(v1_parent, deadline));
  }
  return RemoveDir(unified_parent, deadline);
}

}  // namespace kiln::kilnd::cgroup::internal
