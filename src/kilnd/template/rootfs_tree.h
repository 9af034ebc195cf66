#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::kilnd::tmpl {

// Owner and mode for files and directories created in a tree.
struct FileAttrs {
  mode_t mode = 0644;
  uid_t uid = 0;
  gid_t gid = 0;
};

// A root filesystem being built, held open by a directory fd. Paths are relative to the tree
// ("etc/passwd" and "/etc/passwd" mean the same) and resolved with
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): a symlink in the tree (absolute or with
// "..") stays inside it, so the host's /etc is never touched through one. The last component
// of a path that is written is never followed (a symlink there is replaced).
// Not thread-safe for overlapping paths; the tree belongs to one build.
class RootfsTree {
 public:
  // kNotFound if `root` does not exist.
  static Result<RootfsTree> Open(const std::filesystem::path& root);

  const std::filesystem::path& path() const { return path_; }
  int fd() const { return fd_.get(); }

  // Contents of a regular file. kNotFound if it does not exist.
  Result<std::string> ReadFile(std::string_view rel) const;
  bool Exists(std::string_view rel) const;

  // Creates or replaces `rel` with `content` (written to a temp file in the same directory,
  // then renamed over it). The parent directory must exist.
  Status WriteFile(std::string_view rel, std::string_view content, const FileAttrs& attrs) const;
  // Replaces the existing file `rel`, keeping its mode and owner. kNotFound if it is missing.
  Status ReplaceFile(std::string_view rel, std::string_view content) const;
  // Copies the host file `src` (following symlinks) to `rel` in the tree, replacing it.
  Status CopyFileIn(const std::filesystem::path& src, std::string_view rel,
                    const FileAttrs& attrs) const;

  // Creates or replaces `rel` with a symlink to `target`, stored verbatim (not resolved, so an
  // absolute target means the sandbox's path), owned by uid:gid. The parent must exist.
  Status Symlink(std::string_view target, std::string_view rel, uid_t uid, gid_t gid) const;

  // mkdir -p: creates missing directories of `rel` with `attrs`; existing ones are kept
  // as they are. kInvalidArgument if a component exists and is not a directory.
  Status MakeDirs(std::string_view rel, const FileAttrs& attrs) const;
  // Opens a directory of the tree (O_DIRECTORY, close-on-exec).
  Result<UniqueFd> OpenDir(std::string_view rel) const;

  // Copies what is inside directory `src_rel` (files, directories, symlinks; modes kept;
  // other file types skipped) into the existing directory `dst_rel`, owned by uid:gid.
  // Existing entries in the destination are an error (kAlreadyExists).
  Status CopyDirContents(std::string_view src_rel, std::string_view dst_rel, uid_t uid,
                         gid_t gid) const;

  // Removes the regular files directly in directory `dir_rel` whose names end in `suffix`
  // ("" = all). A missing directory is fine. Returns how many were removed.
  Result<int> RemoveFiles(std::string_view dir_rel, std::string_view suffix) const;

 private:
  RootfsTree(std::filesystem::path path, UniqueFd fd)
      : path_(std::move(path)), fd_(std::move(fd)) {}

  // The parent directory of `rel`, opened, and the last component (never "", "." or "..").
  Result<std::pair<UniqueFd, std::string>> OpenParent(std::string_view rel) const;
  Result<UniqueFd> Resolve(std::string_view rel, int flags) const;

  std::filesystem::path path_;
  UniqueFd fd_;
};

}  // namespace kiln::kilnd::tmpl
