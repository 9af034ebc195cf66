#include "kilnd/runtime/vm/vm_instance.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "kilnd/runtime/vm/file_io.h"

namespace kiln::kilnd::vm {

namespace fs = std::filesystem;
using Json = nlohmann::json;

VmInstance::VmInstance(VmInstanceParts parts) : parts_(std::move(parts)) {
  pid_ = parts_.qemu ? parts_.qemu->pid() : -1;
}

VmInstance::~VmInstance() { (void)Kill(); }

Result<UniqueFd> VmInstance::OpenSocket() {
  std::lock_guard l(mu_);
  if (killed_) return Fail(Errc::kFailedPrecondition, "sandbox " + parts_.id + " is gone");
  KILN_ASSIGN_OR_RETURN(UniqueFd fd, net::SocketInNetns(parts_.netns.get(), AF_INET,
                                                        SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  // Closing aborts (RST) instead of a FIN handshake: once the guest is gone, a socket left
  // retransmitting its FIN to it would keep the sandbox's network namespace (and its veth
  // and address slot) alive for minutes. kilnd closes a connection only when done with it.
  linger abort{1, 0};
  if (setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof abort) < 0) {
    return FailErrno("SO_LINGER on a sandbox socket");
  }
  return fd;
}

Result<UniqueFd> VmInstance::OpenUdpSocket() {
  std::lock_guard l(mu_);
  if (killed_) return Fail(Errc::kFailedPrecondition, "sandbox " + parts_.id + " is gone");
  return net::SocketInNetns(parts_.netns.get(), AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            0);
}

Status VmInstance::Freeze() {
  std::lock_guard l(mu_);
  if (killed_) return Fail(Errc::kFailedPrecondition, "sandbox " + parts_.id + " is gone");
  KILN_TRY(parts_.qemu->Execute("stop"));
  return {};
}

Status VmInstance::Thaw() {
  std::lock_guard l(mu_);
  if (killed_) return Fail(Errc::kFailedPrecondition, "sandbox " + parts_.id + " is gone");
  KILN_TRY(parts_.qemu->Execute("cont"));
  return {};
}

Status VmInstance::SetEgress(const EgressPolicy& policy) {
  std::lock_guard l(mu_);
  if (!parts_.link) {
    if (policy.internet) return Fail(Errc::kFailedPrecondition, "the sandbox has no network");
    return {};
  }
  return parts_.link->SetInternet(policy.internet);
}

Status VmInstance::SnapshotFiles(const fs::path& dest) {
  std::lock_guard l(mu_);
  if (killed_) return Fail(Errc::kFailedPrecondition, "sandbox " + parts_.id + " is gone");
  std::error_code ec;
  fs::create_directories(dest, ec);
  if (ec) return Fail(Errc::kUnavailable, "create " + dest.string() + ": " + ec.message());
  // The whole RAM goes into the stream: the guest's pages are private copies of the template's.
  Json caps = Json::array();
  caps.push_back(Json{{"capability", "x-ignore-shared"}, {"state", false}});
  caps.push_back(Json{{"capability", "events"}, {"state", true}});
  KILN_TRY(parts_.qemu->Execute("migrate-set-capabilities", Json{{"capabilities", caps}}));
  fs::path memory = dest / "memory";
  UniqueFd out(open(memory.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out) return FailErrno("create " + memory.string());
  KILN_TRY(parts_.qemu->SendFd("pause", out.get()));
  out.reset();
  KILN_TRY(parts_.qemu->Execute("migrate", Json{{"uri", "fd:pause"}}));
  KILN_TRY(parts_.qemu->WaitMigration(std::chrono::minutes(5)));
  fs::copy_file(parts_.overlay, dest / "disk.qcow2", fs::copy_options::overwrite_existing, ec);
  if (ec) return Fail(Errc::kUnavailable, "copy the guest's disk: " + ec.message());
  KILN_TRY(WritePausedVmInfo(dest, PausedVmInfo{parts_.snapshot.dir, parts_.snapshot.memory_mib}));
  // The paused guest's disk is an overlay on the template's: keep the template while it exists.
  KILN_TRY(AddTemplateSnapshotRef(parts_.snapshot.dir, dest));
  return {};
}

Result<InstanceStats> VmInstance::Stats() {
  std::lock_guard l(mu_);
  if (killed_) return Fail(Errc::kFailedPrecondition, "sandbox " + parts_.id + " is gone");
  InstanceStats s;
  s.cpu_count = parts_.cpu_count;
  s.mem_total = uint64_t{parts_.snapshot.memory_mib} << 20;
  if (parts_.cgroup) {
    KILN_ASSIGN_OR_RETURN(cgroup::Stats cg, parts_.cgroup->ReadStats());
    s.cpu_usage_ns = cg.cpu_usage_ns;
    // QEMU's own footprint; the guest's view of its memory would need the agent.
    s.mem_used = std::min(cg.memory_usage, s.mem_total);
    s.mem_cache = std::min(cg.memory_cache, s.mem_used);
  }
  struct stat st {};
  if (stat(parts_.overlay.c_str(), &st) == 0) s.disk_used = static_cast<uint64_t>(st.st_blocks) * 512;
  s.disk_total = parts_.disk_total;
  return s;
}

Result<UniqueFd> VmInstance::ExitFd() {
  std::lock_guard l(mu_);
  if (killed_ || !parts_.qemu) return Fail(Errc::kFailedPrecondition, "sandbox " + parts_.id + " is gone");
  int fd = fcntl(parts_.qemu->pidfd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return FailErrno("dup qemu pidfd");
  return UniqueFd(fd);
}

Status VmInstance::Kill() {
  std::lock_guard l(mu_);
  if (killed_) return {};
  killed_ = true;
  Status result;
  if (parts_.qemu) parts_.qemu->Kill();
  if (parts_.cgroup) {
    if (auto st = parts_.cgroup->Kill(parts_.timeout); !st) result = st;
    if (auto st = parts_.cgroup->Remove(); !st && result) result = st;
    parts_.cgroup.reset();
  }
  parts_.qemu.reset();
  parts_.link.reset();  // after QEMU is gone (see SandboxLink)
  parts_.netns.reset();
  std::error_code ec;
  fs::remove_all(parts_.dir, ec);
  if (ec && result) result = Fail(Errc::kInternal, "remove " + parts_.dir.string() + ": " + ec.message());
  return result;
}

}  // namespace kiln::kilnd::vm
