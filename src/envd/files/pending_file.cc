#include "envd/files/pending_file.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "sys/file_metadata.h"

namespace kiln::envd {
namespace {

constexpr mode_t kNewFileMode = 0644;
constexpr mode_t kNewDirMode = 0755;

std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

// "<dir>/.kiln-upload-<16 hex>": short enough for any directory whose files fit NAME_MAX.
std::string TempName(const std::string& dir) {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r) {
    r = static_cast<uint64_t>(getpid()) * 0x9e3779b97f4a7c15ull ^
        static_cast<uint64_t>(time(nullptr)) ^ reinterpret_cast<uintptr_t>(&r);
  }
  char name[40];
  std::snprintf(name, sizeof name, ".kiln-upload-%016llx", static_cast<unsigned long long>(r));
  return (dir == "/" ? std::string() : dir) + "/" + name;
}

// Where the bytes for `destination` go and which mode the file gets.
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
  for (int attempt = 0;; ++attempt) {
    std::string temp = TempName(dir);
    int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      if (errno == EEXIST && attempt < 16) continue;
      return FailErrno("create temporary file in " + dir);
    }
    PendingFile file(std::move(target.path), std::move(temp), UniqueFd(fd));
    if (fchown(fd, owner.uid, owner.gid) != 0) return FailErrno("chown " + file.temp_path_);
    if (fchmod(fd, target.mode) != 0) return FailErrno("chmod " + file.temp_path_);
    return file;
  }
}

PendingFile::PendingFile(PendingFile&& other) noexcept
    : target_(std::move(other.target_)),
      temp_path_(std::exchange(other.temp_path_, std::string())),
      fd_(std::move(other.fd_)) {}

PendingFile::~PendingFile() {
  fd_.reset();
  if (!temp_path_.empty()) unlink(temp_path_.c_str());
}

Status PendingFile::Write(std::string_view data) {
  if (!fd_) return Fail(Errc::kInternal, "write after close");
  while (!data.empty()) {
    ssize_t n = write(fd_.get(), data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return FailErrno("write " + target_);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status();
}

Status PendingFile::CloseForWriting() {
  if (!fd_) return Status();
  // close() is where some file systems (NFS, quota) report that the data did not fit.
  if (close(fd_.release()) != 0 && errno != EINTR) return FailErrno("close " + target_);
  return Status();
}

Status PendingFile::Commit(const std::map<std::string, std::string>& metadata) {
  KILN_TRY(CloseForWriting());
  if (temp_path_.empty()) return Fail(Errc::kInternal, "commit twice");
  if (Status st = sys::WriteMetadata(temp_path_, metadata); !st) {
    return Unexpected(std::move(st).error().Wrap("metadata of " + target_));
  }
  if (rename(temp_path_.c_str(), target_.c_str()) != 0) return FailErrno("rename to " + target_);
  temp_path_.clear();
  return Status();
}

}  // namespace kiln::envd
