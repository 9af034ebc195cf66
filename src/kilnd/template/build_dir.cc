#include "kilnd/template/build_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"
#include "sys/dir_list.h"

namespace kiln::kilnd::tmpl {
namespace {

constexpr char kBuilderFile[] = ".builder";

// Undoes the octal escapes (\040 for a space) of /proc/self/mountinfo paths.
std::string UnescapeMountPath(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      std::string_view oct = s.substr(i + 1, 3);
      if (std::ranges::all_of(oct, [](char c) { return c >= '0' && c <= '7'; })) {
        out += static_cast<char>((oct[0] - '0') * 64 + (oct[1] - '0') * 8 + (oct[2] - '0'));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

// Mount points at or below `dir` (canonical), deepest first.
std::vector<std::string> MountsBelow(const std::string& dir) {
  std::vector<std::string> mounts;
  // thread-self: the mount namespace of the calling thread, which may have unshared its own.
  std::ifstream in("/proc/thread-self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point;
    if (!(fields >> id >> parent >> devno >> root >> mount_point)) continue;
    std::string mp = UnescapeMountPath(mount_point);
    if (mp == dir || mp.starts_with(dir + "/")) mounts.push_back(std::move(mp));
  }
  std::ranges::sort(mounts,
                    [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return mounts;
}

Status DetachMounts(const std::string& dir) {
  // Mounts may be stacked on one another: repeat until none is left.
  for (int round = 0; round < 16; ++round) {
    std::vector<std::string> mounts = MountsBelow(dir);
    if (mounts.empty()) return {};
    for (const std::string& mp : mounts) {
      if (umount2(mp.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL &&
          errno != ENOENT) {
        return FailErrno("detach mount " + mp);
      }
    }
  }
  return Fail(Errc::kInternal, "mounts below " + dir + " do not go away");
}

// Deletes what is in `dirfd`, staying on device `dev`.
Status RemoveContents(int dirfd, dev_t dev, const std::string& path) {
  KILN_ASSIGN_OR_RETURN(std::vector<std::string> names, sys::ListDirNames(dirfd, path));
  for (const std::string& name : names) {
    std::string child = path + "/" + name;
    struct stat st;
    if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) continue;
      return FailErrno("stat " + child);
    }
    if (S_ISDIR(st.st_mode)) {
      if (st.st_dev != dev) {
        return Fail(Errc::kFailedPrecondition, "remove " + child + ": another filesystem");
      }
      UniqueFd sub(openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) return FailErrno("open " + child);
      KILN_TRY(RemoveContents(sub.get(), dev, child));
    }
    if (unlinkat(dirfd, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0 &&
        errno != ENOENT) {
      return FailErrno("remove " + child);
    }
  }
  return {};
}

// Field 22 of /proc/<pid>/stat: start time in clock ticks since boot.
std::optional<unsigned long long> ProcessStartTime(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');  // the command name may contain anything, ')' included
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(paren + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return std::nullopt;
  }
  char* end = nullptr;
  unsigned long long v = strtoull(field.c_str(), &end, 10);
  if (end == field.c_str() || *end != '\0') return std::nullopt;
  return v;
}

// Kills the process group recorded in <dir>/.builder if its leader is still the process that
// was recorded, and waits (bounded) for the leader to die.
void KillRecordedBuilder(const std::filesystem::path& dir) {
  std::ifstream in(dir / kBuilderFile);
  long long pid = 0;
  unsigned long long start = 0;
  if (!(in >> pid >> start) || pid <= 1) return;
  // The pidfd pins the identity: once it is open, a start-time match cannot be a reused pid.
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0)));
  if (!pidfd) return;  // gone
  if (ProcessStartTime(static_cast<pid_t>(pid)) != start) return;
  KILN_LOG(Warn, "killing the builder of an interrupted template build", {"pid", pid},
           {"dir", dir.string()});
  kill(-static_cast<pid_t>(pid), SIGKILL);
  syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
  pollfd pfd{pidfd.get(), POLLIN, 0};
  while (poll(&pfd, 1, 10000) < 0 && errno == EINTR) {
  }
}

}  // namespace

Result<BuildDir> BuildDir::Create(const std::filesystem::path& store, std::string_view name) {
  std::string tmpl =
      (store / (std::string(kBuildDirPrefix) + std::string(name) + "-XXXXXX")).string();
  if (mkdtemp(tmpl.data()) == nullptr) return FailErrno("create build dir in " + store.string());
  BuildDir dir{std::filesystem::path(tmpl)};
  if (chmod(tmpl.c_str(), 0755) < 0) return FailErrno("chmod " + tmpl);
  return dir;
}

BuildDir::~BuildDir() {
  if (path_.empty()) return;
  if (Status st = RemoveTree(path_); !st) {
    KILN_LOG(Warn, "cannot remove template build dir", {"error", st.error().message()});
  }
}

Status BuildDir::RecordBuilder(pid_t pid) const {
  std::optional<unsigned long long> start = ProcessStartTime(pid);
  if (!start) return Fail(Errc::kNotFound, "no process " + std::to_string(pid));
  std::ofstream out(path_ / kBuilderFile, std::ios::trunc);
  out << pid << ' ' << *start << '\n';
  out.flush();
  if (!out) return Fail(Errc::kInternal, "write " + (path_ / kBuilderFile).string());
  return {};
}

void BuildDir::ForgetBuilder() const { unlink((path_ / kBuilderFile).c_str()); }

void RemoveStaleBuildDirs(const std::filesystem::path& store) {
  std::error_code ec;
  std::vector<std::filesystem::path> stale;
  for (std::filesystem::directory_iterator it(store, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().starts_with(kBuildDirPrefix)) stale.push_back(it->path());
  }
  for (const auto& dir : stale) {
    KILN_LOG(Info, "removing an interrupted template build", {"dir", dir.string()});
    KillRecordedBuilder(dir);
    if (Status st = RemoveTree(dir); !st) {
      KILN_LOG(Warn, "cannot remove template build dir", {"error", st.error().message()});
    }
  }
}

Status RemoveTree(const std::filesystem::path& dir) {
  // The parent is resolved, the last component is not: a symlink is removed, not followed.
  std::filesystem::path abs = std::filesystem::absolute(dir).lexically_normal();
  if (abs.filename().empty()) abs = abs.parent_path();
  std::error_code ec;
  std::filesystem::path parent = std::filesystem::canonical(abs.parent_path(), ec);
  if (ec == std::errc::no_such_file_or_directory) return {};
  if (ec) return Fail(Errc::kInternal, "resolve " + dir.string() + ": " + ec.message());
  std::string path = (parent / abs.filename()).string();
  struct stat lst;
  if (lstat(path.c_str(), &lst) < 0) {
    if (errno == ENOENT) return {};
    return FailErrno("stat " + path);
  }
  if (path == "/") return Fail(Errc::kInvalidArgument, "refusing to remove /");
  KILN_TRY(DetachMounts(path));
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOTDIR || errno == ELOOP) {
      if (unlink(path.c_str()) < 0) return FailErrno("remove " + path);
      return {};
    }
    return FailErrno("open " + path);
  }
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return FailErrno("stat " + path);
  KILN_TRY(RemoveContents(fd.get(), st.st_dev, path));
  if (rmdir(path.c_str()) < 0) return FailErrno("remove " + path);
  return {};
}

}  // namespace kiln::kilnd::tmpl
