#include "envd/files/pending_file.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "sys/file_metadata.h"

namespace kiln::envd {
namespace {

constexpr mode_t kNewFileMode = 0644;
constexpr mode_t kNewDirMode = 0755;
constexpr size_t kCopyChunk = 1 << 20;

std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

// Where the bytes for `destination` go and which mode a new file gets.
struct Target {
  std::string path;
  mode_t mode = kNewFileMode;
};

Result<Target> ResolveTarget(const std::string& destination) {
  struct stat st {};
  if (lstat(destination.c_str(), &st) != 0) {
    if (errno == ENOENT) return Target{destination};
    if (errno == ENOTDIR) {
      return Fail(Errc::kInvalidArgument, "a parent of '" + destination + "' is not a directory");
    }
    return FailErrno("stat " + destination);
  }
  std::string path = destination;
  if (S_ISLNK(st.st_mode)) {
    if (stat(destination.c_str(), &st) != 0) return Target{destination};  // dangling: replace it
    char real[PATH_MAX];
    if (!realpath(destination.c_str(), real)) return FailErrno("resolve " + destination);
    path = real;
  }
  if (S_ISDIR(st.st_mode)) {
    return Fail(Errc::kInvalidArgument, "path '" + destination + "' is a directory");
  }
  if (!S_ISREG(st.st_mode)) {
    return Fail(Errc::kInvalidArgument, "path '" + destination + "' is not a regular file");
  }
  return Target{path, static_cast<mode_t>(st.st_mode & 0777)};
}

// The topmost ancestor of `dir` on the same device: the staged file must live on the
// destination's file system (for linkat), but in a directory users are unlikely to watch,
// because inotify reports an O_TMPFILE's writes to its directory's watchers as "#<inode>".
std::string StagingDir(const std::string& dir) {
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) return dir;
  std::string cur = dir;
  while (cur != "/") {
    std::string up = Parent(cur);
    struct stat parent {};
    if (stat(up.c_str(), &parent) != 0 || parent.st_dev != st.st_dev) break;
    cur = up;
  }
  return cur;
}

// An unnamed regular file in `dir`: O_TMPFILE, or where that is unsupported a named
// temporary that is unlinked at once.
Result<UniqueFd> OpenUnnamedFile(const std::string& dir) {
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return UniqueFd(fd);
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    return FailErrno("create staging file in " + dir);
  }
  for (int attempt = 0; attempt < 16; ++attempt) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r) {
      r = static_cast<uint64_t>(time(nullptr)) * 0x9e3779b97f4a7c15ull + attempt;
    }
    char name[40];
    std::snprintf(name, sizeof name, "/.kiln-upload-%016llx", static_cast<unsigned long long>(r));
    std::string path = (dir == "/" ? std::string() : dir) + name;
    fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
      unlink(path.c_str());
      return UniqueFd(fd);
    }
    if (errno != EEXIST) break;
  }
  return FailErrno("create staging file in " + dir);
}

// Fails with ENOSPC unless `dir`'s file system has `bytes` free (for this process).
Status CheckFreeSpace(const std::string& dir, uint64_t bytes) {
  struct statvfs vfs {};
  if (bytes == 0 || statvfs(dir.c_str(), &vfs) != 0) return Status();
  uint64_t blocks = geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail;
  if (blocks * vfs.f_frsize >= bytes) return Status();
  return Unexpected(Error::FromErrno(ENOSPC, "replace " + dir));
}

Status CopyBytes(int from, int to, uint64_t size, const std::string& what) {
  off_t in = 0;
  bool kernel_copy = true;
  std::string buf;
  while (static_cast<uint64_t>(in) < size) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(size - in, kCopyChunk));
    ssize_t n;
    if (kernel_copy) {
      n = copy_file_range(from, &in, to, nullptr, want, 0);
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                    errno == EOPNOTSUPP || errno == EBADF)) {
        kernel_copy = false;
        continue;
      }
    } else {
      buf.resize(want);
      n = pread(from, buf.data(), want, in);
      if (n > 0) {
        std::string_view chunk(buf.data(), static_cast<size_t>(n));
        while (!chunk.empty()) {
          ssize_t w = write(to, chunk.data(), chunk.size());
          if (w < 0 && errno == EINTR) continue;
          if (w < 0) return FailErrno("write " + what);
          chunk.remove_prefix(static_cast<size_t>(w));
        }
        in += n;
      }
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("write " + what);
    if (n == 0) return Fail(Errc::kInternal, "staged upload of " + what + " is short");
  }
  return Status();
}

}  // namespace

Status MakeParentDirs(const std::string& dir, FileOwner owner) {
  struct stat st {};
  if (stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status();
    return Fail(Errc::kInvalidArgument, "path '" + dir + "' is not a directory");
  }
  if (errno != ENOENT) {
    if (errno == ENOTDIR) {
      return Fail(Errc::kInvalidArgument, "a parent of '" + dir + "' is not a directory");
    }
    return FailErrno("stat " + dir);
  }
  KILN_TRY(MakeParentDirs(Parent(dir), owner));
  if (mkdir(dir.c_str(), kNewDirMode) != 0) {
    if (errno == EEXIST) return MakeParentDirs(dir, owner);  // raced with another creator
    return FailErrno("mkdir " + dir);
  }
  if (chown(dir.c_str(), owner.uid, owner.gid) != 0) return FailErrno("chown " + dir);
  return Status();
}

Result<PendingFile> PendingFile::Create(const std::string& destination, FileOwner owner) {
  if (destination.empty() || destination == "/") {
    return Fail(Errc::kInvalidArgument, "path '" + destination + "' is a directory");
  }
  KILN_TRY(MakeParentDirs(Parent(destination), owner));
  KILN_ASSIGN_OR_RETURN(Target target, ResolveTarget(destination));
  std::string dir = Parent(target.path);
  Result<UniqueFd> fd = OpenUnnamedFile(StagingDir(dir));
  if (!fd && fd.error().sys_errno() != ENOSPC && fd.error().sys_errno() != EDQUOT) {
    fd = OpenUnnamedFile(dir);
  }
  if (!fd) return Unexpected(std::move(fd).error());
  if (fchown(fd->get(), owner.uid, owner.gid) != 0) return FailErrno("chown " + target.path);
  if (fchmod(fd->get(), target.mode) != 0) return FailErrno("chmod " + target.path);
  return PendingFile(std::move(target.path), owner, target.mode, std::move(*fd));
}

Status PendingFile::Write(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd_.get(), data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return FailErrno("write " + target_);
    }
    data.remove_prefix(static_cast<size_t>(n));
    size_ += static_cast<uint64_t>(n);
  }
  return Status();
}

bool PendingFile::LinkIntoPlace() const {
  // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc path works without it.
  if (linkat(fd_.get(), "", AT_FDCWD, target_.c_str(), AT_EMPTY_PATH) != 0) {
    std::string self = "/proc/self/fd/" + std::to_string(fd_.get());
    if (linkat(AT_FDCWD, self.c_str(), AT_FDCWD, target_.c_str(), AT_SYMLINK_FOLLOW) != 0) {
      return false;  // e.g. EEXIST (created meanwhile), EXDEV, no /proc: copy instead
    }
  }
  // The link shows up as CREATE only; upstream's in-place write also reports WRITE, which
  // SDK users wait for. A same-size truncate through the new name is a no-op that does.
  int fd = open(target_.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    if (ftruncate(fd, static_cast<off_t>(size_)) != 0) {
      // Only a notification is lost; the file is in place.
    }
    close(fd);
  }
  return true;
}

Status PendingFile::CopyIntoPlace() const {
  struct stat st {};
  bool exists = stat(target_.c_str(), &st) == 0;
  uint64_t old_size = exists ? static_cast<uint64_t>(st.st_size) : 0;
  // Truncating first would lose the old content if the new one then does not fit.
  KILN_TRY(CheckFreeSpace(Parent(target_), size_ > old_size ? size_ - old_size : 0));
  int fd = open(target_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return FailErrno("open " + target_);
  UniqueFd out(fd);
  if (!exists && fchmod(fd, mode_) != 0) return FailErrno("chmod " + target_);
  if (fchown(fd, owner_.uid, owner_.gid) != 0) return FailErrno("chown " + target_);
  KILN_TRY(CopyBytes(fd_.get(), fd, size_, target_));
  // close() is where some file systems (NFS, quota) report that the data did not fit.
  if (close(out.release()) != 0 && errno != EINTR) return FailErrno("close " + target_);
  return Status();
}

Status PendingFile::Commit(const std::map<std::string, std::string>& metadata) {
  if (!fd_) return Fail(Errc::kInternal, "commit twice");
  struct stat st {};
  bool exists = lstat(target_.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode)) {
    return Fail(Errc::kInvalidArgument, "path '" + target_ + "' is a directory");
  }
  if (exists || !LinkIntoPlace()) KILN_TRY(CopyIntoPlace());
  fd_.reset();
  if (Status written = sys::WriteMetadata(target_, metadata); !written) {
    return Unexpected(std::move(written).error().Wrap("metadata of " + target_));
  }
  return Status();
}

}  // namespace kiln::envd
