#pragma once

#include <sys/types.h>

#include <cstdint>
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

// One uploaded file on its way to `destination`. The bytes are staged in an unnamed file
// (O_TMPFILE) at the root of the destination's mount, so an upload that fails or is cut off
// leaves nothing behind and nothing shows up in the destination's directory meanwhile.
// Commit() then links a new file into place, or copies over an existing one (in-kernel,
// copy_file_range), so watchers see CREATE/WRITE on the file's own name as with upstream
// envd's in-place writes. Move-only; not thread-safe.
class PendingFile {
 public:
  // REQUIRES: `destination` is absolute and normalized. Creates the parent directories.
  // A destination that is a symlink to an existing file is written through (the target
  // is replaced). An existing file keeps its permission bits; new files get 0644. Both are
  // owned by `owner`. kInvalidArgument when the destination is a directory or not a
  // regular file; ENOSPC/EDQUOT come back as kResourceExhausted with the errno.
  static Result<PendingFile> Create(const std::string& destination, FileOwner owner);

  Status Write(std::string_view data);
  // Puts the staged bytes at the destination and replaces its metadata (user.e2b.*
  // xattrs) with `metadata`. kResourceExhausted (ENOSPC) when an existing file cannot be
  // replaced for lack of space; the old content is then left untouched.
  Status Commit(const std::map<std::string, std::string>& metadata);

  // The path the bytes end up at (the symlink target when one was followed).
  const std::string& target() const { return target_; }

 private:
  PendingFile(std::string target, FileOwner owner, mode_t mode, UniqueFd fd)
      : target_(std::move(target)), owner_(owner), mode_(mode), fd_(std::move(fd)) {}

  bool LinkIntoPlace() const;
  Status CopyIntoPlace() const;

  std::string target_;
  FileOwner owner_;
  mode_t mode_;  // for a file that does not exist yet
  UniqueFd fd_;  // the staged, unnamed file
  uint64_t size_ = 0;
};

}  // namespace kiln::envd
