#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "envd/filesystem/entry_info.h"

// The file operations behind filesystem.Filesystem, on absolute, normalized paths. They run
// with the agent's privileges and hand new files to the requesting user. Short blocking
// syscalls only; the callers run them on the agent's io_context thread.
namespace kiln::envd::fsops {

// Owner given to everything these functions create.
struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
};

// SECURITY: `raw` comes from the client. kInvalidArgument for NUL bytes and paths longer
// than PATH_MAX.
Status CheckClientPath(std::string_view raw);

// Creates `path` and its missing parents (mode 0755 before umask), each new directory owned
// by `owner`. Existing directories (or symlinks to them) are left alone. kInvalidArgument when
// a component exists but is not a directory.
Status MakeDirs(const std::string& path, Owner owner);

// filesystem.MakeDir: kAlreadyExists when `path` is a directory, kInvalidArgument when it
// exists as something else; otherwise MakeDirs().
Status MakeDir(const std::string& path, Owner owner);

// Largest ListDir result; beyond it the call fails with kResourceExhausted.
inline constexpr size_t kMaxListEntries = 200000;

// filesystem.ListDir: the entries below `path` up to `depth` levels (depth >= 1), depth-first
// and sorted by name within each directory. A symlinked `path` is followed; symlinks below
// it are listed but not descended. Entry paths keep `path` as their prefix.
// kNotFound when `path` is missing, kInvalidArgument when it is not a directory,
// kResourceExhausted beyond `max_entries`.
Result<std::vector<EntryInfo>> ListDir(const std::string& path, uint32_t depth,
                                       OwnerNames& names, size_t max_entries = kMaxListEntries);

// ListDir in resumable steps, so that a large tree does not hold up the agent's loop between
// them. Not thread-safe.
class ListDirWalk {
 public:
  // Checks `path` and reads the root directory; errors as ListDir.
  static Result<ListDirWalk> Start(const std::string& path, uint32_t depth,
                                   size_t max_entries = kMaxListEntries);
  // Lists up to `budget` more entries.
  Status Step(OwnerNames& names, size_t budget);
  bool done() const { return stack_.empty(); }
  std::vector<EntryInfo> TakeEntries() { return std::move(out_); }

 private:
  struct Frame {
    std::string real_dir;   // where the entries are read
    std::string shown_dir;  // the prefix reported in their paths
    uint32_t level = 1;
    std::vector<std::string> names;
    size_t next = 0;
  };
  ListDirWalk(uint32_t depth, size_t max_entries) : depth_(depth), max_entries_(max_entries) {}

  uint32_t depth_;
  size_t max_entries_;
  std::vector<Frame> stack_;
  std::vector<EntryInfo> out_;
};

// filesystem.Move: rename(2) `source` to `destination`, creating the destination's parent
// directories; copies and removes when they are on different file systems.
// kNotFound when `source` does not exist.
Status Move(const std::string& source, const std::string& destination, Owner owner);

// filesystem.Remove: removes `path` and everything below it without following symlinks.
// A missing path is success. kInvalidArgument for "/".
Status RemoveAll(const std::string& path);

// RemoveAll in resumable steps. Holds one directory fd per level of the tree being removed.
// Not thread-safe.
class TreeRemoval {
 public:
  static Result<TreeRemoval> Start(const std::string& path);
  // Removes up to `budget` more entries.
  Status Step(size_t budget);
  bool done() const { return done_; }

 private:
  // A directory being emptied; removed itself once its names are done.
  struct Frame {
    UniqueFd fd;
    std::string name;   // in the parent frame's directory (or parent_)
    std::string shown;  // full path, for messages
    std::vector<std::string> names;
    size_t next = 0;
  };
  TreeRemoval() = default;
  Status Descend(int parent_fd, const std::string& name, const std::string& shown, int unlink_err);

  UniqueFd parent_;  // directory holding the removed path
  std::string name_;  // its last component
  std::string path_;
  std::vector<Frame> stack_;
  bool done_ = false;
};

// Whether `path` lives on a network or FUSE file system (NFS, SMB/CIFS, FUSE, AFS, Ceph, ...).
Result<bool> IsNetworkFilesystem(const std::string& path);

// "<dir>/<name>" without doubling the slash when dir is "/".
std::string JoinPath(const std::string& dir, std::string_view name);

}  // namespace kiln::envd::fsops
