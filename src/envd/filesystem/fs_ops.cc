#include "envd/filesystem/fs_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>
#include <memory>

#include "base/unique_fd.h"

namespace kiln::envd::fsops {
namespace {

struct DirCloser {
  void operator()(DIR* d) const { closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

std::string Dirname(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

std::string Basename(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Names in an open directory stream, sorted (Go's WalkDir order). Consumes `dir`.
std::vector<std::string> SortedNames(DirPtr dir) {
  std::vector<std::string> names;
  while (dirent* e = readdir(dir.get())) {
    std::string_view n(e->d_name);
    if (n != "." && n != "..") names.emplace_back(n);
  }
  std::sort(names.begin(), names.end());
  return names;
}

Status CopyFileData(int in, int out, const std::string& what) {
  std::array<char, 64 * 1024> buf;
  for (;;) {
    ssize_t n = read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("read " + what);
    if (n == 0) return Status();
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf.data() + off, static_cast<size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return FailErrno("write " + what);
      off += w;
    }
  }
}

Status CopyTree(const std::string& src, const std::string& dst);

Status CopyRegular(const std::string& src, const std::string& dst, const struct stat& st) {
  UniqueFd in(open(src.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!in) return FailErrno("open " + src);
  UniqueFd out(open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!out) return FailErrno("create " + dst);
  KILN_TRY(CopyFileData(in.get(), out.get(), src));
  if (fchown(out.get(), st.st_uid, st.st_gid) != 0) return FailErrno("chown " + dst);
  if (fchmod(out.get(), st.st_mode & 07777) != 0) return FailErrno("chmod " + dst);
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  (void)futimens(out.get(), times);  // cosmetic: keep the modification time
  return Status();
}

Status CopyDir(const std::string& src, const std::string& dst, const struct stat& st) {
  if (mkdir(dst.c_str(), 0700) != 0) return FailErrno("mkdir " + dst);
  DirPtr dir(opendir(src.c_str()));
  if (!dir) return FailErrno("open directory " + src);
  for (const std::string& name : SortedNames(std::move(dir))) {
    KILN_TRY(CopyTree(JoinPath(src, name), JoinPath(dst, name)));
  }
  if (lchown(dst.c_str(), st.st_uid, st.st_gid) != 0) return FailErrno("chown " + dst);
  if (chmod(dst.c_str(), st.st_mode & 07777) != 0) return FailErrno("chmod " + dst);
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  (void)utimensat(AT_FDCWD, dst.c_str(), times, 0);
  return Status();
}

Status CopyTree(const std::string& src, const std::string& dst) {
  struct stat st;
  if (lstat(src.c_str(), &st) != 0) return FailErrno("lstat " + src);
  if (S_ISREG(st.st_mode)) return CopyRegular(src, dst, st);
  if (S_ISDIR(st.st_mode)) return CopyDir(src, dst, st);
  if (S_ISLNK(st.st_mode)) {
    std::array<char, PATH_MAX> buf;
    ssize_t n = readlink(src.c_str(), buf.data(), buf.size() - 1);
    if (n < 0) return FailErrno("readlink " + src);
    std::string target(buf.data(), static_cast<size_t>(n));
    if (symlink(target.c_str(), dst.c_str()) != 0) return FailErrno("symlink " + dst);
    if (lchown(dst.c_str(), st.st_uid, st.st_gid) != 0) return FailErrno("chown " + dst);
    const struct timespec times[2] = {st.st_atim, st.st_mtim};
    (void)utimensat(AT_FDCWD, dst.c_str(), times, AT_SYMLINK_NOFOLLOW);
    return Status();
  }
  return Fail(Errc::kInvalidArgument, "cannot move special file across file systems: " + src);
}

// rename(2) semantics for the copy fallback: a file replaces a file, a directory replaces
// an empty directory.
Status ClearDestination(const std::string& dst, bool src_is_dir) {
  struct stat st;
  if (lstat(dst.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status();
    return FailErrno("lstat " + dst);
  }
  if (S_ISDIR(st.st_mode)) {
    if (!src_is_dir) return FailErrno("rename to " + dst, EISDIR);
    if (rmdir(dst.c_str()) != 0) return FailErrno("replace " + dst);
    return Status();
  }
  if (src_is_dir) return FailErrno("rename to " + dst, ENOTDIR);
  if (unlink(dst.c_str()) != 0) return FailErrno("replace " + dst);
  return Status();
}

Status CopyThenRemove(const std::string& src, const std::string& dst) {
  struct stat st;
  if (lstat(src.c_str(), &st) != 0) return FailErrno("lstat " + src);
  KILN_TRY(ClearDestination(dst, S_ISDIR(st.st_mode)));
  Status copied = CopyTree(src, dst);
  if (!copied) {
    (void)RemoveAll(dst);  // best effort: leave no half copy behind
    return Unexpected(std::move(copied).error().Wrap("move across file systems"));
  }
  return RemoveAll(src);
}

}  // namespace

std::string JoinPath(const std::string& dir, std::string_view name) {
  std::string out = dir;
  if (!out.ends_with('/')) out += '/';
  out += name;
  return out;
}

Status CheckClientPath(std::string_view raw) {
  if (raw.find('\0') != std::string_view::npos) {
    return Fail(Errc::kInvalidArgument, "path contains a NUL byte");
  }
  if (raw.size() >= PATH_MAX) {
    return Fail(Errc::kInvalidArgument,
                "path is longer than " + std::to_string(PATH_MAX - 1) + " bytes");
  }
  return Status();
}

Status MakeDirs(const std::string& path, Owner owner) {
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (prefix.empty() || prefix == "/") continue;
    if (mkdir(prefix.c_str(), 0755) == 0) {
      if (lchown(prefix.c_str(), owner.uid, owner.gid) != 0) return FailErrno("chown " + prefix);
      continue;
    }
    if (errno != EEXIST) return FailErrno("mkdir " + prefix);
    struct stat st;
    if (stat(prefix.c_str(), &st) != 0) return FailErrno("stat " + prefix);
    if (!S_ISDIR(st.st_mode)) {
      return Fail(Errc::kInvalidArgument, "path exists but is not a directory: " + prefix);
    }
  }
  return Status();
}

Status MakeDir(const std::string& path, Owner owner) {
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Fail(Errc::kAlreadyExists, "directory already exists: " + path);
    return Fail(Errc::kInvalidArgument, "path already exists but it is not a directory: " + path);
  }
  if (errno == ENOTDIR) {
    return Fail(Errc::kInvalidArgument, "a parent of " + path + " is not a directory");
  }
  if (errno != ENOENT) return FailErrno("stat " + path);
  return MakeDirs(path, owner);
}

Result<ListDirWalk> ListDirWalk::Start(const std::string& path, uint32_t depth,
                                       size_t max_entries) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return Fail(Errc::kNotFound, "directory not found: " + path);
    }
    return FailErrno("stat " + path);
  }
  if (!S_ISDIR(st.st_mode)) return Fail(Errc::kInvalidArgument, "path is not a directory: " + path);
  std::unique_ptr<char, decltype(&free)> real(realpath(path.c_str(), nullptr), &free);
  if (!real) return FailErrno("resolve " + path);
  DirPtr dir(opendir(real.get()));
  if (!dir) return FailErrno("open directory " + path);
  ListDirWalk walk(depth < 1 ? 1 : depth, max_entries);
  walk.stack_.push_back(Frame{real.get(), path, 1, SortedNames(std::move(dir)), 0});
  return walk;
}

Status ListDirWalk::Step(OwnerNames& names, size_t budget) {
  while (budget > 0 && !stack_.empty()) {
    Frame& top = stack_.back();
    if (top.next == top.names.size()) {
      stack_.pop_back();
      continue;
    }
    const std::string& name = top.names[top.next++];
    std::string real = JoinPath(top.real_dir, name);
    std::string shown = JoinPath(top.shown_dir, name);
    uint32_t level = top.level;
    auto entry = ReadEntryInfo(real, names);
    if (!entry) {
      if (entry.error().code() == Errc::kNotFound) continue;  // removed meanwhile
      return Unexpected(std::move(entry).error());
    }
    if (out_.size() >= max_entries_) {
      return Fail(Errc::kResourceExhausted, "directory listing exceeds " +
                                                std::to_string(max_entries_) +
                                                " entries; use a smaller depth");
    }
    entry->path = shown;
    bool descend = entry->type == FileType::kDirectory && !entry->symlink_target && level < depth_;
    out_.push_back(std::move(*entry));
    --budget;
    if (descend) {
      // A directory that vanished or cannot be read is listed but not entered.
      DirPtr dir(opendir(real.c_str()));
      if (dir) stack_.push_back(Frame{real, shown, level + 1, SortedNames(std::move(dir)), 0});
    }
  }
  return Status();
}

Result<std::vector<EntryInfo>> ListDir(const std::string& path, uint32_t depth,
                                       OwnerNames& names, size_t max_entries) {
  KILN_ASSIGN_OR_RETURN(ListDirWalk walk, ListDirWalk::Start(path, depth, max_entries));
  while (!walk.done()) KILN_TRY(walk.Step(names, SIZE_MAX));
  return walk.TakeEntries();
}

Status Move(const std::string& source, const std::string& destination, Owner owner) {
  struct stat st;
  if (lstat(source.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return Fail(Errc::kNotFound, "source not found: " + source);
    }
    return FailErrno("lstat " + source);
  }
  KILN_TRY(MakeDirs(Dirname(destination), owner));
  if (rename(source.c_str(), destination.c_str()) == 0) return Status();
  if (errno != EXDEV) return FailErrno("rename " + source + " to " + destination);
  return CopyThenRemove(source, destination);
}

Result<TreeRemoval> TreeRemoval::Start(const std::string& path) {
  if (path == "/" || path.empty()) return Fail(Errc::kInvalidArgument, "refusing to remove /");
  TreeRemoval r;
  r.path_ = path;
  r.name_ = Basename(path);
  r.parent_ = UniqueFd(open(Dirname(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!r.parent_) {
    if (errno != ENOENT && errno != ENOTDIR) return FailErrno("open " + Dirname(path));
    r.done_ = true;
    return r;
  }
  if (unlinkat(r.parent_.get(), r.name_.c_str(), 0) == 0 || errno == ENOENT) {
    r.done_ = true;
    return r;
  }
  int err = errno;
  KILN_TRY(r.Descend(r.parent_.get(), r.name_, path, err));
  r.done_ = r.stack_.empty();
  return r;
}

// `name` in `parent_fd` could not be unlinked (`unlink_err`); when it is a directory, stacks
// a frame that empties and then removes it.
Status TreeRemoval::Descend(int parent_fd, const std::string& name, const std::string& shown,
                            int unlink_err) {
  // Linux unlink() of a directory fails with EISDIR; POSIX allows EPERM.
  if (unlink_err != EISDIR && unlink_err != EPERM) return FailErrno("remove " + shown, unlink_err);
  UniqueFd fd(openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Status();
    return FailErrno("remove " + shown, errno == ENOTDIR ? unlink_err : errno);
  }
  // fdopendir() takes its fd; list through a duplicate and keep `fd` for the *at() calls.
  int list_fd = fcntl(fd.get(), F_DUPFD_CLOEXEC, 0);
  if (list_fd < 0) return FailErrno("dup " + shown);
  DirPtr dir(fdopendir(list_fd));
  if (!dir) {
    close(list_fd);
    return FailErrno("open directory " + shown);
  }
  stack_.push_back(Frame{std::move(fd), name, shown, SortedNames(std::move(dir)), 0});
  return Status();
}

Status TreeRemoval::Step(size_t budget) {
  while (budget > 0 && !stack_.empty()) {
    --budget;
    Frame& top = stack_.back();
    if (top.next < top.names.size()) {
      const std::string child = top.names[top.next++];
      int dir_fd = top.fd.get();
      if (unlinkat(dir_fd, child.c_str(), 0) == 0 || errno == ENOENT) continue;
      int err = errno;
      KILN_TRY(Descend(dir_fd, child, JoinPath(top.shown, child), err));
      continue;
    }
    int parent_fd = stack_.size() > 1 ? stack_[stack_.size() - 2].fd.get() : parent_.get();
    if (unlinkat(parent_fd, top.name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return FailErrno("remove " + top.shown);
    }
    stack_.pop_back();
  }
  done_ = stack_.empty();
  return Status();
}

Status RemoveAll(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(TreeRemoval removal, TreeRemoval::Start(path));
  while (!removal.done()) KILN_TRY(removal.Step(SIZE_MAX));
  return Status();
}

Result<bool> IsNetworkFilesystem(const std::string& path) {
  struct statfs fs;
  if (statfs(path.c_str(), &fs) != 0) return FailErrno("statfs " + path);
  switch (static_cast<uint32_t>(fs.f_type)) {
    case 0x6969:      // NFS
    case 0x517B:      // SMB
    case 0xFF534D42:  // CIFS
    case 0xFE534D42:  // SMB2
    case 0x65735546:  // FUSE (sshfs, s3fs, gcsfuse, ...)
    case 0x564C:      // NCP
    case 0x5346414F:  // AFS
    case 0x6B414653:  // kAFS
    case 0x00C36400:  // Ceph
    case 0x73757245:  // Coda
      return true;
    default:
      return false;
  }
}

}  // namespace kiln::envd::fsops
