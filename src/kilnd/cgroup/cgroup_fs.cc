#include "kilnd/cgroup/cgroup_fs.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <vector>

namespace kiln::kilnd::cgroup::internal {
namespace {

// glibc 2.36 declares pidfd_open without C linkage in C++; call the kernel directly.
int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }
int PidfdKill(int pidfd) { return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0)); }

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
}

std::string Name(const std::filesystem::path& dir, const char* file) {
  return (dir / file).string();
}

}  // namespace

Result<UniqueFd> OpenDir(const std::filesystem::path& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + path.string());
  return fd;
}

Status WriteAt(int dirfd, const std::filesystem::path& dir, const char* file,
               std::string_view value) {
  UniqueFd fd(openat(dirfd, file, O_WRONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + Name(dir, file));
  ssize_t n = write(fd.get(), value.data(), value.size());
  if (n < 0) return FailErrno("write " + std::string(value) + " to " + Name(dir, file));
  if (static_cast<size_t>(n) != value.size()) {
    return Fail(Errc::kInternal, "short write to " + Name(dir, file));
  }
  return {};
}

Result<std::string> ReadAt(int dirfd, const std::filesystem::path& dir, const char* file) {
  UniqueFd fd(openat(dirfd, file, O_RDONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + Name(dir, file));
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return FailErrno("read " + Name(dir, file));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::optional<uint64_t> KeyedValue(std::string_view text, std::string_view key) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ' ') {
      return ParseNumber(line.substr(key.size() + 1));
    }
    pos = end + 1;
  }
  return std::nullopt;
}

std::optional<uint64_t> ParseNumber(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

Status WaitEvent(int dirfd, const std::filesystem::path& dir, std::string_view key, uint64_t want,
                 Clock::time_point deadline) {
  UniqueFd fd(openat(dirfd, "cgroup.events", O_RDONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + Name(dir, "cgroup.events"));
  char buf[256];
  for (;;) {
    // Reading arms the notification: kernfs reports POLLPRI once the file changes after it.
    ssize_t n = pread(fd.get(), buf, sizeof buf - 1, 0);
    if (n < 0) return FailErrno("read " + Name(dir, "cgroup.events"));
    auto value = KeyedValue(std::string_view(buf, static_cast<size_t>(n)), key);
    if (!value) {
      return Fail(Errc::kInternal, Name(dir, "cgroup.events") + " has no " + std::string(key));
    }
    if (*value == want) return {};
    int ms = RemainingMs(deadline);
    if (ms == 0) {
      return Fail(Errc::kTimeout, "timed out waiting for " + std::string(key) + " " +
                                      std::to_string(want) + " in " + dir.string());
    }
    pollfd p{fd.get(), POLLPRI, 0};
    int r = poll(&p, 1, ms);
    if (r < 0 && errno != EINTR) return FailErrno("poll " + Name(dir, "cgroup.events"));
  }
}

Status RemoveDir(const std::filesystem::path& path, Clock::time_point deadline) {
  for (;;) {
    if (rmdir(path.c_str()) == 0 || errno == ENOENT) return {};
    if (errno != EBUSY || Clock::now() >= deadline) return FailErrno("rmdir " + path.string());
    // A task that just exited can keep a v1 group busy until its css_set is released; that
    // takes microseconds and has no event to wait on.
    sched_yield();
  }
}

Status KillListedTasks(const std::filesystem::path& dir, Clock::time_point deadline) {
  UniqueFd dirfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd) {
    if (errno == ENOENT) return {};
    return FailErrno("open " + dir.string());
  }
  for (int round = 0; round < 100; ++round) {
    KILN_ASSIGN_OR_RETURN(std::string procs, ReadAt(dirfd.get(), dir, "cgroup.procs"));
    if (procs.empty()) return {};
    std::vector<UniqueFd> pidfds;
    size_t pos = 0;
    while (pos < procs.size()) {
      size_t end = procs.find('\n', pos);
      if (end == std::string::npos) end = procs.size();
      auto pid = ParseNumber(std::string_view(procs).substr(pos, end - pos));
      pos = end + 1;
      if (!pid) continue;
      UniqueFd pidfd(PidfdOpen(static_cast<pid_t>(*pid)));
      if (!pidfd) continue;  // already gone
      PidfdKill(pidfd.get());
      pidfds.push_back(std::move(pidfd));
    }
    for (auto& pidfd : pidfds) {
      pollfd p{pidfd.get(), POLLIN, 0};
      int ms = RemainingMs(deadline);
      if (poll(&p, 1, ms) == 0) {
        return Fail(Errc::kTimeout, "timed out killing the tasks of " + dir.string());
      }
    }
  }
  return Fail(Errc::kTimeout, "tasks keep appearing in " + dir.string());
}

}  // namespace kiln::kilnd::cgroup::internal
