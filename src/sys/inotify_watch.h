#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::sys {

// Operation bits of a WatchEvent; one inotify event can carry several.
enum WatchOp : uint32_t {
  kWatchCreate = 1u << 0,
  kWatchWrite = 1u << 1,
  kWatchRemove = 1u << 2,
  kWatchRename = 1u << 3,
  kWatchChmod = 1u << 4,
};

// Maps an inotify event mask to WatchOp bits:
//   IN_CREATE, IN_MOVED_TO          -> create
//   IN_MODIFY, IN_CLOSE_WRITE       -> write
//   IN_DELETE, IN_DELETE_SELF       -> remove
//   IN_MOVED_FROM, IN_MOVE_SELF     -> rename
//   IN_ATTRIB                       -> chmod
uint32_t WatchOpsForMask(uint32_t mask);

// One translated change below the watched directory.
struct WatchEvent {
  // Path relative to the watched directory ("sub/file.txt"); "." for the directory itself.
  std::string name;
  uint32_t ops = 0;  // WatchOp bits
  bool is_dir = false;
};

// An inotify instance watching one directory, or with `recursive` its whole subtree
// (directories created or moved in later are added as they appear, and their contents are
// reported as created). Symlinks below the root are not followed, and neither are mounts of
// kernel pseudo file systems (proc, sysfs, cgroup, ...). The fd is non-blocking and
// close-on-exec; callers poll it for readability and then call ReadEvents().
// Not thread-safe.
class InotifyWatch {
 public:
  // Watches `root` and, when recursive, its whole current subtree.
  // kNotFound when `root` is missing, kInvalidArgument when it is not a directory,
  // kResourceExhausted when the inotify instance or watch limit is reached.
  static Result<InotifyWatch> Open(const std::string& root, bool recursive);
  // Like Open(), but only the root is watched on return; ContinueSetup() adds the existing
  // subtree in steps, so that a large tree does not hold up the caller's loop.
  static Result<InotifyWatch> OpenRoot(const std::string& root, bool recursive);
  // Watches up to `budget` more directories of the subtree present at OpenRoot().
  Status ContinueSetup(size_t budget);
  bool setup_done() const { return setup_.empty(); }

  InotifyWatch(InotifyWatch&&) = default;
  InotifyWatch& operator=(InotifyWatch&&) = default;

  int fd() const { return fd_.get(); }
  const std::string& root() const { return root_; }
  // Number of directories currently watched.
  size_t watched_dirs() const { return dirs_.size(); }

  // Reads every queued event without blocking and translates it. An empty vector means
  // nothing was queued. kResourceExhausted when the kernel queue overflowed (events lost).
  Result<std::vector<WatchEvent>> ReadEvents();

  // Translates one raw event; exposed for tests. `name` may be empty (event on the watched
  // directory itself); `cookie` pairs IN_MOVED_FROM with IN_MOVED_TO.
  Result<std::vector<WatchEvent>> Translate(int wd, uint32_t mask, std::string_view name,
                                            uint32_t cookie = 0);

 private:
  InotifyWatch(UniqueFd fd, std::string root, bool recursive)
      : fd_(std::move(fd)), root_(std::move(root)), recursive_(recursive) {}

  // Watches `rel` (relative to the root, "" for the root) and, when recursive, every
  // directory below it. Returns a create event for each entry found below `rel`.
  Result<std::vector<WatchEvent>> AddTree(const std::string& rel);
  Status AddOne(const std::string& rel, bool is_root);
  void ForgetTree(const std::string& rel);
  // Rewrites the watched directories under `from` to live under `to`.
  void RenameTree(const std::string& from, const std::string& to);
  // Drops the watches of a directory that was moved away and did not reappear in the tree.
  void SettleMove();
  std::string FullPath(const std::string& rel) const;

  UniqueFd fd_;
  std::string root_;
  bool recursive_ = false;
  int root_wd_ = -1;
  // Watch descriptor -> directory relative to the root ("" for the root itself).
  std::unordered_map<int, std::string> dirs_;
  // Directories (relative) of the initial subtree still to be watched.
  std::vector<std::string> setup_;
  // A directory seen in IN_MOVED_FROM whose IN_MOVED_TO (same cookie) has not arrived yet;
  // the kernel queues the pair back to back.
  uint32_t move_cookie_ = 0;
  std::string move_from_;
  bool move_pending_ = false;
};

}  // namespace kiln::sys
