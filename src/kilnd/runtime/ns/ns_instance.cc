#include "kilnd/runtime/ns/ns_instance.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <system_error>

#include "base/log.h"
#include "kilnd/net/netns.h"
#include "kilnd/runtime/ns/linux_api.h"
#include "sys/tree_copy.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace kiln::kilnd::ns {

ChildProcess::ChildProcess(ChildProcess&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), pidfd_(std::move(o.pidfd_)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
  if (this != &o) {
    Kill();
    (void)Reap();
    pid_ = std::exchange(o.pid_, -1);
    pidfd_ = std::move(o.pidfd_);
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  Kill();
  (void)Reap();
}

void ChildProcess::Kill() {
  if (pidfd_) linux_api::PidfdSendSignal(pidfd_.get(), SIGKILL);
}

bool ChildProcess::Exited() const {
  if (!pidfd_) return false;
  pollfd p{pidfd_.get(), POLLIN, 0};
  return poll(&p, 1, 0) == 1;
}

Status ChildProcess::Reap(std::chrono::milliseconds timeout) {
  if (!pidfd_) return {};
  pollfd p{pidfd_.get(), POLLIN, 0};
  int ready;
  do {
    ready = poll(&p, 1, static_cast<int>(timeout.count()));
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) {
    return Fail(Errc::kTimeout, "sandbox init " + std::to_string(pid_) + " did not exit");
  }
  siginfo_t info{};
  int r;
  do {
    r = waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info, WEXITED);
  } while (r < 0 && errno == EINTR);
  if (r < 0 && errno != ECHILD) return FailErrno("wait for sandbox init " + std::to_string(pid_));
  pidfd_.reset();
  return {};
}

NsInstance::NsInstance(NsInstanceParts parts)
    : parts_(std::move(parts)), init_pid_(parts_.init.pid()) {}

NsInstance::~NsInstance() {
  auto st = Kill();
  if (!st) {
    KILN_LOG(Error, "sandbox teardown failed", {"sandbox", parts_.id},
             {"error", st.error().message()});
  }
}

Status NsInstance::CheckAlive() const {
  if (killed_) return Fail(Errc::kFailedPrecondition, "sandbox " + parts_.id + " was killed");
  return {};
}

Result<UniqueFd> NsInstance::ExitFd() {
  std::lock_guard lock(mu_);
  KILN_TRY(CheckAlive());
  // A pidfd polls readable once the process has exited.
  int fd = fcntl(parts_.init.pidfd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return FailErrno("dup pidfd of sandbox " + parts_.id);
  return UniqueFd(fd);
}

Result<UniqueFd> NsInstance::OpenUdpSocket() {
  std::lock_guard lock(mu_);
  KILN_TRY(CheckAlive());
  return net::SocketInNetns(parts_.netns.get(), AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            0);
}

Result<UniqueFd> NsInstance::OpenSocket() {
  std::lock_guard lock(mu_);
  KILN_TRY(CheckAlive());
  return net::SocketInNetns(parts_.netns.get(), AF_INET, SOCK_STREAM | SOCK_NONBLOCK |
                                                            SOCK_CLOEXEC, 0);
}

Status NsInstance::Freeze() {
  std::lock_guard lock(mu_);
  KILN_TRY(CheckAlive());
  auto st = parts_.cgroup->Freeze(parts_.timeout);
  if (!st) return Unexpected(std::move(st).error().Wrap("freeze sandbox " + parts_.id));
  return {};
}

Status NsInstance::Thaw() {
  std::lock_guard lock(mu_);
  KILN_TRY(CheckAlive());
  auto st = parts_.cgroup->Thaw();
  if (!st) return Unexpected(std::move(st).error().Wrap("thaw sandbox " + parts_.id));
  return {};
}

Status NsInstance::SetEgress(const EgressPolicy& policy) {
  std::lock_guard lock(mu_);
  KILN_TRY(CheckAlive());
  if (!parts_.link) {
    if (!policy.internet) return {};  // a loopback-only sandbox reaches nothing anyway
    return Fail(Errc::kFailedPrecondition, "sandbox " + parts_.id + " has no network");
  }
  return parts_.link->SetInternet(policy.internet);
}

Status NsInstance::SnapshotFiles(const std::filesystem::path& dest) {
  std::lock_guard lock(mu_);
  KILN_TRY(CheckAlive());
  if (mkdir(dest.c_str(), 0700) < 0) return FailErrno("snapshot: mkdir " + dest.string());
  UniqueFd dst(open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dst) return FailErrno("snapshot: open " + dest.string());
  sys::TreeCopyOptions options;
  options.skip_top_level = {".kiln"};
  auto st = sys::CopyTree(parts_.upper.get(), dst.get(), options);
  if (!st) {
    return Unexpected(std::move(st).error().Wrap("snapshot sandbox " + parts_.id + " to " +
                                                 dest.string()));
  }
  return {};
}

Result<InstanceStats> NsInstance::Stats() {
  std::lock_guard lock(mu_);
  KILN_TRY(CheckAlive());
  KILN_ASSIGN_OR_RETURN(cgroup::Stats cg, parts_.cgroup->ReadStats());
  InstanceStats s;
  s.cpu_usage_ns = cg.cpu_usage_ns;
  s.cpu_count = parts_.cpu_count;
  s.mem_used = cg.memory_usage;
  s.mem_total = cg.memory_limit;
  s.mem_cache = cg.memory_cache;
  struct statvfs vfs{};
  if (fstatvfs(parts_.upper.get(), &vfs) < 0) return FailErrno("statfs of the writable layer");
  s.disk_total = uint64_t{vfs.f_blocks} * vfs.f_frsize;
  s.disk_used = uint64_t{vfs.f_blocks - vfs.f_bfree} * vfs.f_frsize;
  return s;
}

Status NsInstance::Kill() {
  std::lock_guard lock(mu_);
  if (killed_) return {};
  killed_ = true;
  Status result;
  auto keep_first = [&result](Status st) {
    if (!st && result) result = std::move(st);
  };
  // Every process: cgroup.kill reaches the whole tree, even what left the pid namespace's
  // view; SIGKILL of init covers a failed cgroup write.
  if (parts_.cgroup) keep_first(parts_.cgroup->Kill(parts_.timeout));
  parts_.init.Kill();
  keep_first(parts_.init.Reap(parts_.timeout));
  // The network namespace (and with it the veth) goes when its last reference does; only then
  // may the link give back its slot.
  parts_.netns.reset();
  parts_.link.reset();
  if (parts_.cgroup) {
    keep_first(parts_.cgroup->Remove());
    parts_.cgroup.reset();
  }
  parts_.upper.reset();
  parts_.layer.reset();  // the last reference to the tmpfs: its memory is freed
  if (!parts_.sandbox_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(parts_.sandbox_dir, ec);
    if (ec) {
      keep_first(Fail(Errc::kInternal, "remove " + parts_.sandbox_dir.string() + ": " +
                                           ec.message()));
    }
  }
  if (!result) return Unexpected(std::move(result).error().Wrap("kill sandbox " + parts_.id));
  return {};
}

}  // namespace kiln::kilnd::ns
