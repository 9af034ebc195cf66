#pragma once

// Temporary directories that template builds run in, and the removal of what killed builds
// leave behind (trees with mounts in them, a builder process still running).

#include <sys/types.h>

#include <filesystem>
#include <string_view>

#include "base/error.h"

namespace kiln::kilnd::tmpl {

// Name prefix of build directories in the store; the store's own entries never start with '.'.
inline constexpr std::string_view kBuildDirPrefix = ".build-";

// A new directory <store>/.build-<name>-XXXXXX (mode 0755). Owns it: the destructor removes it
// with everything below (RemoveTree) unless Release() was called, e.g. after it was renamed
// into place. Move-only.
class BuildDir {
 public:
  static Result<BuildDir> Create(const std::filesystem::path& store, std::string_view name);
  BuildDir(BuildDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  BuildDir& operator=(BuildDir&&) = delete;
  BuildDir(const BuildDir&) = delete;
  ~BuildDir();

  const std::filesystem::path& path() const { return path_; }
  // Records `pid` (a process group leader doing the build) in the directory, so that
  // RemoveStaleBuildDirs can kill its group if this process dies before it.
  Status RecordBuilder(pid_t pid) const;
  // Drops the record once the builder is gone (before the directory is installed).
  void ForgetBuilder() const;
  void Release() { path_.clear(); }

 private:
  explicit BuildDir(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

// Removes every build directory in `store` (call with the store's build lock held): kills a
// recorded builder that still runs (checked by pid and start time, so a reused pid is left
// alone), then RemoveTree. Failures are logged and skipped; the next build tries again.
void RemoveStaleBuildDirs(const std::filesystem::path& store);

// Detaches every mount at or below `dir` (debootstrap mounts proc, sys and sometimes /dev binds
// in its target and leaves them when killed), then deletes the tree without crossing into
// another filesystem. A missing `dir` is success.
Status RemoveTree(const std::filesystem::path& dir);

}  // namespace kiln::kilnd::tmpl
