#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::envd {

// Who uploaded files and the directories made for them belong to.
struct FileOwner {
  uid_t uid = 0;
  gid_t gid = 0;
};

// Creates `dir` and its missing parents (mode 0755 before umask), each new one owned by
// `owner`. kInvalidArgument when a component exists but is not a directory.
Status MakeParentDirs(const std::string& dir, FileOwner owner);

// One uploaded file on its way to `destination`: the bytes go to a hidden temporary file in
// the destination's directory, which Commit() renames over the destination, so readers
// never see a half-written file. Destroyed uncommitted, it removes the temporary file.
// Move-only; not thread-safe.
class PendingFile {
 public:
  // REQUIRES: `destination` is absolute and normalized. Creates the parent directories.
  // A destination that is a symlink to an existing file is written through (the target
  // is replaced). An existing file keeps its permission bits; new files get 0644. Both are
  // owned by `owner`. kInvalidArgument when the destination is a directory or not a
  // regular file; ENOSPC/EDQUOT come back as kResourceExhausted with the errno.
  static Result<PendingFile> Create(const std::string& destination, FileOwner owner);

  PendingFile(PendingFile&& other) noexcept;
  PendingFile& operator=(PendingFile&& other) = delete;
  PendingFile(const PendingFile&) = delete;
  ~PendingFile();

  Status Write(std::string_view data);
  // Closes the temporary file; later writes fail. Commit() calls it too.
  Status CloseForWriting();
  // Replaces the metadata (user.e2b.* xattrs) with `metadata`, then renames the temporary
  // file over the destination.
  Status Commit(const std::map<std::string, std::string>& metadata);

  // The path the bytes end up at (the symlink target when one was followed).
  const std::string& target() const { return target_; }

 private:
  PendingFile(std::string target, std::string temp_path, UniqueFd fd)
      : target_(std::move(target)), temp_path_(std::move(temp_path)), fd_(std::move(fd)) {}

  std::string target_;
  std::string temp_path_;  // empty once renamed or removed
  UniqueFd fd_;
};

}  // namespace kiln::envd
