#include "sys/inotify_watch.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace kiln::sys {
namespace {

// IN_MODIFY alone reports writes: IN_CLOSE_WRITE would add a second WRITE for every write.
constexpr uint32_t kEventMask = IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
constexpr uint32_t kSelfMask = IN_DELETE_SELF | IN_MOVE_SELF;
// Bounds one ReadEvents() call so a busy writer cannot keep the caller's loop to itself.
constexpr int kMaxReadsPerCall = 16;

std::string Join(const std::string& dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string out = dir;
  out += '/';
  out += name;
  return out;
}

bool IsUnder(const std::string& path, const std::string& dir) {
  return path == dir ||
         (path.size() > dir.size() && path.starts_with(dir) && path[dir.size()] == '/');
}

struct DirCloser {
  void operator()(DIR* d) const { closedir(d); }
};

struct Child {
  std::string name;
  bool is_dir = false;
  // A directory a recursive watch descends into (not a pseudo file system mount).
  bool watchable = false;
};

// Kernel pseudo file systems: watching them is useless (proc alone has thousands of
// directories that come and go) and autofs would trigger mounts.
bool IsPseudoFilesystem(const std::string& path) {
  struct statfs fs;
  if (statfs(path.c_str(), &fs) != 0) return true;
  switch (static_cast<uint32_t>(fs.f_type)) {
    case 0x9fa0:      // proc
    case 0x62656572:  // sysfs
    case 0x27e0eb:    // cgroup
    case 0x63677270:  // cgroup2
    case 0x64626720:  // debugfs
    case 0x74726163:  // tracefs
    case 0x73636673:  // securityfs
    case 0xcafe4a11:  // bpf
    case 0x1cd1:      // devpts
    case 0x62656570:  // configfs
    case 0x6165676c:  // pstore
    case 0x19800202:  // mqueue
    case 0x65735543:  // fusectl
    case 0x42494e4d:  // binfmt_misc
    case 0xde5e81e4:  // efivarfs
    case 0xf97cff8c:  // selinuxfs
    case 0x0187:      // autofs
      return true;
    default:
      return false;
  }
}

// Entries of a directory (not following symlinks), sorted by name. A directory that is gone
// or unreadable yields no entries: it raced with a removal or is not ours to watch.
std::vector<Child> ListChildren(const std::string& path) {
  std::vector<Child> out;
  std::unique_ptr<DIR, DirCloser> dir(opendir(path.c_str()));
  if (!dir) return out;
  struct stat self;
  if (fstat(dirfd(dir.get()), &self) != 0) return out;
  while (dirent* e = readdir(dir.get())) {
    std::string_view name(e->d_name);
    if (name == "." || name == "..") continue;
    Child c{std::string(name), false, false};
    if (e->d_type == DT_DIR || e->d_type == DT_UNKNOWN) {
      struct stat st;
      c.is_dir = fstatat(dirfd(dir.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                 S_ISDIR(st.st_mode);
      // Only a mount point changes the device; check its file system there alone.
      c.watchable = c.is_dir && (st.st_dev == self.st_dev ||
                                 !IsPseudoFilesystem(path + "/" + c.name));
    }
    out.push_back(std::move(c));
  }
  std::sort(out.begin(), out.end(), [](const Child& a, const Child& b) { return a.name < b.name; });
  return out;
}

}  // namespace

uint32_t WatchOpsForMask(uint32_t mask) {
  uint32_t ops = 0;
  if (mask & (IN_CREATE | IN_MOVED_TO)) ops |= kWatchCreate;
  if (mask & (IN_MODIFY | IN_CLOSE_WRITE)) ops |= kWatchWrite;
  if (mask & (IN_DELETE | IN_DELETE_SELF)) ops |= kWatchRemove;
  if (mask & (IN_MOVED_FROM | IN_MOVE_SELF)) ops |= kWatchRename;
  if (mask & IN_ATTRIB) ops |= kWatchChmod;
  return ops;
}

Result<InotifyWatch> InotifyWatch::OpenRoot(const std::string& root, bool recursive) {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    if (errno == EMFILE) {
      return Fail(Errc::kResourceExhausted,
                  "too many inotify instances (fs.inotify.max_user_instances)");
    }
    return FailErrno("inotify_init1");
  }
  InotifyWatch watch(UniqueFd(fd), root, recursive);
  KILN_TRY(watch.AddOne("", /*is_root=*/true));
  if (recursive) {
    for (const Child& c : ListChildren(root)) {
      if (c.watchable) watch.setup_.push_back(c.name);
    }
  }
  return watch;
}

Result<InotifyWatch> InotifyWatch::Open(const std::string& root, bool recursive) {
  KILN_ASSIGN_OR_RETURN(InotifyWatch watch, OpenRoot(root, recursive));
  KILN_TRY(watch.ContinueSetup(SIZE_MAX));
  return watch;
}

Status InotifyWatch::ContinueSetup(size_t budget) {
  for (; budget > 0 && !setup_.empty(); --budget) {
    std::string dir = std::move(setup_.back());
    setup_.pop_back();
    Status added = AddOne(dir, /*is_root=*/false);
    if (!added) {
      if (added.error().code() == Errc::kResourceExhausted) return added;
      continue;  // vanished or not a directory any more
    }
    for (const Child& c : ListChildren(FullPath(dir))) {
      if (c.watchable) setup_.push_back(Join(dir, c.name));
    }
  }
  return Status();
}

std::string InotifyWatch::FullPath(const std::string& rel) const {
  if (rel.empty()) return root_;
  if (root_.ends_with('/')) return root_ + rel;
  return root_ + "/" + rel;
}

Status InotifyWatch::AddOne(const std::string& rel, bool is_root) {
  std::string path = FullPath(rel);
  // Only the root may be reached through a symlink; below it, links are entries, not trees.
  uint32_t mask = kEventMask | (is_root ? 0 : IN_DONT_FOLLOW);
  int wd = inotify_add_watch(fd_.get(), path.c_str(), mask);
  if (wd < 0) {
    int err = errno;
    if (err == ENOSPC) {
      return Fail(Errc::kResourceExhausted,
                  "inotify watch limit reached (fs.inotify.max_user_watches) at " + path);
    }
    if (err == ENOTDIR) return Fail(Errc::kInvalidArgument, "not a directory: " + path);
    return FailErrno("inotify_add_watch " + path, err);
  }
  dirs_[wd] = rel;
  if (is_root) root_wd_ = wd;
  return Status();
}

Result<std::vector<WatchEvent>> InotifyWatch::AddTree(const std::string& rel) {
  std::vector<WatchEvent> found;
  std::vector<std::string> pending{rel};
  while (!pending.empty()) {
    std::string dir = std::move(pending.back());
    pending.pop_back();
    Status added = AddOne(dir, /*is_root=*/false);
    if (!added) {
      // Raced with a removal or rename, or not a directory any more: nothing to watch.
      if (added.error().code() != Errc::kResourceExhausted) continue;
      return Unexpected(std::move(added).error());
    }
    for (const Child& c : ListChildren(FullPath(dir))) {
      std::string child = Join(dir, c.name);
      found.push_back(WatchEvent{child, kWatchCreate, c.is_dir});
      if (c.watchable) pending.push_back(std::move(child));
    }
  }
  return found;
}

void InotifyWatch::ForgetTree(const std::string& rel) {
  for (auto it = dirs_.begin(); it != dirs_.end();) {
    if (it->first != root_wd_ && IsUnder(it->second, rel)) {
      inotify_rm_watch(fd_.get(), it->first);  // EINVAL when the kernel already dropped it
      it = dirs_.erase(it);
    } else {
      ++it;
    }
  }
}

void InotifyWatch::RenameTree(const std::string& from, const std::string& to) {
  for (auto& [wd, dir] : dirs_) {
    if (wd != root_wd_ && IsUnder(dir, from)) dir = to + dir.substr(from.size());
  }
}

void InotifyWatch::SettleMove() {
  if (!move_pending_) return;
  move_pending_ = false;
  ForgetTree(move_from_);
}

Result<std::vector<WatchEvent>> InotifyWatch::Translate(int wd, uint32_t mask,
                                                        std::string_view name, uint32_t cookie) {
  std::vector<WatchEvent> out;
  bool completes_move = move_pending_ && (mask & IN_MOVED_TO) && cookie == move_cookie_;
  if (!completes_move) SettleMove();
  if (mask & IN_Q_OVERFLOW) {
    return Fail(Errc::kResourceExhausted, "inotify event queue overflowed; events were lost");
  }
  if (mask & IN_IGNORED) {
    dirs_.erase(wd);
    if (wd == root_wd_) root_wd_ = -1;
    return out;
  }
  auto it = dirs_.find(wd);
  if (it == dirs_.end()) return out;
  if (name.empty()) {
    // A subdirectory's own events also reach its parent's watch, with a name; report those.
    if (wd != root_wd_) return out;
    uint32_t ops = WatchOpsForMask(mask & (kSelfMask | IN_ATTRIB));
    if (ops) out.push_back(WatchEvent{".", ops, true});
    return out;
  }
  std::string rel = Join(it->second, name);
  bool is_dir = (mask & IN_ISDIR) != 0;
  uint32_t ops = WatchOpsForMask(mask & ~kSelfMask);
  if (ops) out.push_back(WatchEvent{rel, ops, is_dir});
  if (recursive_ && is_dir) {
    if (mask & IN_DELETE) ForgetTree(rel);
    if (mask & IN_MOVED_FROM) {
      // Keep the watches until we know whether the directory stays inside the tree.
      move_pending_ = true;
      move_cookie_ = cookie;
      move_from_ = rel;
    }
    if (completes_move) {
      // Moved within the tree: its watches carry on under the new name.
      move_pending_ = false;
      RenameTree(move_from_, rel);
    } else if (mask & (IN_CREATE | IN_MOVED_TO)) {
      ForgetTree(rel);
      KILN_ASSIGN_OR_RETURN(std::vector<WatchEvent> found, AddTree(rel));
      for (WatchEvent& e : found) out.push_back(std::move(e));
    }
  }
  return out;
}

Result<std::vector<WatchEvent>> InotifyWatch::ReadEvents() {
  std::vector<WatchEvent> out;
  alignas(inotify_event) char buf[64 * 1024];
  for (int i = 0; i < kMaxReadsPerCall; ++i) {
    ssize_t n = read(fd_.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return FailErrno("read inotify");
    }
    if (n == 0) break;
    for (ssize_t off = 0; off + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
      inotify_event ev;
      std::memcpy(&ev, buf + off, sizeof ev);
      const char* name_ptr = buf + off + sizeof(inotify_event);
      std::string_view name(name_ptr, ev.len ? strnlen(name_ptr, ev.len) : 0);
      KILN_ASSIGN_OR_RETURN(std::vector<WatchEvent> evs, Translate(ev.wd, ev.mask, name, ev.cookie));
      for (WatchEvent& e : evs) out.push_back(std::move(e));
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev.len);
    }
  }
  return out;
}

}  // namespace kiln::sys
