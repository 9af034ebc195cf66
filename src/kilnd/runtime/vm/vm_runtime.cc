#include "kilnd/runtime/vm/vm_runtime.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/scope_exit.h"
#include "kilnd/net/guest_link.h"
#include "kilnd/runtime/vm/disk_image.h"
#include "kilnd/runtime/vm/file_io.h"
#include "kilnd/runtime/vm/guest_agent.h"
#include "kilnd/runtime/vm/initramfs.h"
#include "kilnd/runtime/vm/qemu_process.h"
#include "kilnd/runtime/vm/template_snapshot.h"
#include "kilnd/runtime/vm/vm_instance.h"

namespace kiln::kilnd::vm {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct VmRuntime::Shared {
  std::unique_ptr<cgroup::CgroupBackend> cgroups;
  MicrovmConfig machine;  // kernel, initrd, cmdline, accel: what every guest boots with
  std::string initrd_hash;
  std::string cmdline_key;
  fs::path sandboxes_dir;
};

namespace {

bool ValidId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

// The template dir a paused sandbox's memory refers to (its RAM file and disk chain).
Result<TemplateSnapshot> PausedSnapshot(const fs::path& from, uint32_t memory_mib) {
  KILN_ASSIGN_OR_RETURN(PausedVmInfo info, ReadPausedVmInfo(from));
  TemplateSnapshot s =
      SnapshotLayout(info.snapshot, info.memory_mib != 0 ? info.memory_mib : memory_mib);
  s.state = from / "memory";  // the paused guest's own, RAM included
  std::error_code ec;
  for (const fs::path& p : {s.disk, s.ram, s.agent_image, s.state}) {
    if (!fs::exists(p, ec)) {
      return Fail(Errc::kFailedPrecondition,
                  "the paused sandbox needs " + p.string() + ", which is gone");
    }
  }
  return s;
}

// QEMU runs as an unprivileged uid and opens files below `dir`: every directory on the way
// must let others through (search permission only, nothing is listed).
Status LetQemuThrough(const fs::path& dir) {
  for (fs::path p = fs::absolute(dir); p.has_relative_path(); p = p.parent_path()) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) return FailErrno("stat " + p.string());
    if ((st.st_mode & S_IXOTH) == 0 && chmod(p.c_str(), (st.st_mode & 07777) | S_IXOTH) != 0) {
      return FailErrno("chmod o+x " + p.string());
    }
  }
  return {};
}

}  // namespace

std::pair<std::string, std::string> DetectAccelerator() {
  std::error_code ec;
  if (fs::exists("/sys/module/kvm_pvm", ec)) {
    return {"tcg", "/dev/kvm is kvm_pvm (a paravirtual nested KVM that cannot run standard guests)"};
  }
  UniqueFd kvm(open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm) return {"tcg", "no usable /dev/kvm"};
  if (ioctl(kvm.get(), KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
    return {"tcg", "/dev/kvm has an unexpected API version"};
  }
  return {"kvm", "/dev/kvm"};
}

VmRuntime::VmRuntime(VmRuntimeOptions options, GuestKernel kernel, std::string accel,
                     std::shared_ptr<Shared> shared)
    : options_(std::move(options)),
      kernel_(std::move(kernel)),
      accel_(std::move(accel)),
      shared_(std::move(shared)) {}

VmRuntime::~VmRuntime() { shared_->cgroups->RemoveParentIfEmpty(); }

bool VmRuntime::guest_aslr() const { return options_.guest_aslr == "on"; }

Result<std::unique_ptr<VmRuntime>> VmRuntime::Create(const VmRuntimeOptions& options) {
  VmRuntimeOptions o = options;
  if (o.name.empty()) return Fail(Errc::kInvalidArgument, "vm runtime: empty instance name");
  if (o.state_dir.empty()) o.state_dir = fs::path("/var/lib/kiln-vm") / o.name;
  if (o.snapshot_dir.empty()) o.snapshot_dir = o.cache_dir / "snapshots";
  if (access(o.qemu.c_str(), X_OK) != 0) {
    return Fail(Errc::kFailedPrecondition,
                "vm runtime: no " + o.qemu.string() + " (install qemu-system-x86)");
  }
  if (access(o.vminit.c_str(), R_OK) != 0) {
    return Fail(Errc::kFailedPrecondition, "vm runtime: no kiln-vminit at " + o.vminit.string());
  }
  auto shared = std::make_shared<Shared>();
  shared->sandboxes_dir = o.state_dir / "sandboxes";
  std::error_code ec;
  fs::create_directories(shared->sandboxes_dir, ec);
  if (ec) return Fail(Errc::kUnavailable, "create " + shared->sandboxes_dir.string() + ": " + ec.message());
  fs::create_directories(o.snapshot_dir, ec);
  if (ec) return Fail(Errc::kUnavailable, "create " + o.snapshot_dir.string() + ": " + ec.message());
  chmod(shared->sandboxes_dir.c_str(), 0711);
  KILN_TRY(LetQemuThrough(shared->sandboxes_dir));
  KILN_TRY(LetQemuThrough(o.snapshot_dir));

  GuestKernelOptions kopts;
  kopts.cache_dir = o.cache_dir;
  KILN_ASSIGN_OR_RETURN(GuestKernel kernel, EnsureGuestKernel(kopts));
  InitramfsSpec ispec;
  ispec.vminit = o.vminit;
  ispec.modules_dir = kernel.modules_dir;
  KILN_ASSIGN_OR_RETURN(Initramfs initramfs, BuildInitramfs(ispec));
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx",
                static_cast<unsigned long long>(Fnv1a(initramfs.archive)));
  fs::path initrd = o.cache_dir / ("initramfs-" + std::string(hash) + ".cpio");
  if (!fs::exists(initrd, ec)) KILN_TRY(ReplaceFile(initrd, initramfs.archive, 0644));

  std::string accel = o.accel;
  std::string why = "configured";
  if (accel == "auto") std::tie(accel, why) = DetectAccelerator();
  if (accel != "tcg" && accel != "kvm") {
    return Fail(Errc::kInvalidArgument, "vm runtime: accelerator must be auto, kvm or tcg");
  }
  if (o.guest_aslr == "auto") o.guest_aslr = accel == "tcg" ? "off" : "on";
  if (o.guest_aslr != "on" && o.guest_aslr != "off") {
    return Fail(Errc::kInvalidArgument, "vm runtime: guest ASLR must be auto, on or off");
  }

  MicrovmConfig& m = shared->machine;
  m.qemu = o.qemu;
  m.accel = accel;
  m.cpu = o.cpu;
  m.memory_mib = o.memory_mib;
  m.kernel = kernel.vmlinux;
  m.initrd = initrd;
  GuestCmdlineOptions cmd;
  cmd.extra = {GuestCmdline()};
  if (o.guest_aslr == "off") cmd.extra.push_back("norandmaps");
  // The proxy reaches a user's server at the guest's address; the agent relays those that
  // listen on the guest's loopback only (the ns runtime reaches them directly).
  cmd.init = {"/.kiln/envd", "--listen", "0.0.0.0", "--port", std::to_string(kGuestAgentPort),
              "--forward-localhost", kGuestAddress};
  shared->cmdline_key = GuestKernelCmdline(cmd);
  if (auto khz = HostTscKhz()) cmd.tsc_khz = *khz;
  m.cmdline = GuestKernelCmdline(cmd);
  shared->initrd_hash = hash;
  KILN_ASSIGN_OR_RETURN(shared->cgroups, cgroup::CgroupBackend::Detect("kiln-" + o.name + "-vm"));

  KILN_LOG(Info, "vm runtime ready", {"accelerator", accel}, {"why", why},
           {"kernel", kernel.release}, {"guest_mib", o.memory_mib}, {"guest_aslr", o.guest_aslr},
           {"note", accel == "tcg" ? "TCG is software emulation: a development mode, slow"
                                   : "hardware virtualization"});
  return std::unique_ptr<VmRuntime>(
      new VmRuntime(std::move(o), std::move(kernel), std::move(accel), std::move(shared)));
}

Result<std::shared_ptr<const TemplateSnapshot>> VmRuntime::SnapshotFor(const InstanceSpec& spec) {
  SnapshotBuild b;
  b.template_name = spec.rootfs.parent_path().filename().string();
  b.rootfs = spec.rootfs;
  b.envd_binary = spec.envd_binary;
  b.interp_binary = spec.interp_binary;
  b.service = spec.service;
  b.snapshot_root = options_.snapshot_dir;
  b.machine = shared_->machine;
  b.kernel_release = kernel_.release;
  b.initrd_hash = shared_->initrd_hash;
  b.cmdline_key = shared_->cmdline_key;
  b.disk_extra_bytes = options_.disk_extra_bytes;
  b.qemu_uid = options_.qemu_uid;
  b.qemu_gid = options_.qemu_gid;
  b.boot_timeout = options_.boot_timeout;
  b.qmp_timeout = options_.timeout;
  KILN_ASSIGN_OR_RETURN(std::string key, SnapshotKey(b));
  std::lock_guard l(snapshots_mu_);
  if (auto it = snapshots_.find(key); it != snapshots_.end()) return it->second;
  UniqueFd hold;
  KILN_ASSIGN_OR_RETURN(TemplateSnapshot snap, EnsureTemplateSnapshot(b, &hold));
  held_[snap.dir] = std::move(hold);
  auto shared = std::make_shared<const TemplateSnapshot>(std::move(snap));
  snapshots_[key] = shared;
  return shared;
}

Status VmRuntime::Prepare(const InstanceSpec& spec) {
  KILN_TRY(SnapshotFor(spec));
  return {};
}

Result<PruneReport> VmRuntime::PruneSnapshots(const fs::path& paused_dir) {
  std::lock_guard l(snapshots_mu_);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(paused_dir, ec)) {
    auto info = ReadPausedVmInfo(e.path());
    if (!info) continue;  // not a vm sandbox's, or unreadable (its resume will say why)
    std::error_code missing;
    if (!fs::exists(info->snapshot / "snapshot.json", missing)) continue;  // gone already
    KILN_TRY(AddTemplateSnapshotRef(info->snapshot, e.path()));
  }
  // The templates this kilnd made snapshots of: their older snapshots are superseded.
  std::vector<std::string> templates;
  for (const auto& [key, snap] : snapshots_) {
    if (auto name = SnapshotTemplateName(snap->dir.filename().string())) {
      templates.push_back(std::move(*name));
    }
  }
  return PruneTemplateSnapshots(options_.snapshot_dir, templates);
}

Result<std::unique_ptr<Instance>> VmRuntime::Create(const InstanceSpec& spec) {
  if (!ValidId(spec.id)) return Fail(Errc::kInvalidArgument, "bad sandbox id \"" + spec.id + "\"");
  std::error_code ec;
  if (!fs::is_directory(spec.rootfs, ec)) {
    return Fail(Errc::kInvalidArgument, "no template rootfs at " + spec.rootfs.string());
  }
  if (access(spec.envd_binary.c_str(), R_OK) != 0) {
    return Fail(Errc::kInvalidArgument, "no agent at " + spec.envd_binary.string());
  }
  TemplateSnapshot snap;
  if (spec.files_from) {
    KILN_ASSIGN_OR_RETURN(snap, PausedSnapshot(*spec.files_from, options_.memory_mib));
    std::lock_guard l(snapshots_mu_);
    if (!held_.contains(snap.dir)) {
      KILN_ASSIGN_OR_RETURN(UniqueFd hold, HoldTemplateSnapshot(snap.dir));
      held_[snap.dir] = std::move(hold);
    }
  } else {
    KILN_ASSIGN_OR_RETURN(auto s, SnapshotFor(spec));
    snap = *s;
  }

  VmInstanceParts p;
  p.id = spec.id;
  p.dir = shared_->sandboxes_dir / spec.id;
  p.overlay = p.dir / "disk.qcow2";
  p.snapshot = snap;
  p.cpu_count = std::max<uint32_t>(1, spec.limits.cpu_millis / 1000);
  p.disk_total = options_.disk_extra_bytes;
  p.timeout = options_.timeout;
  if (!fs::create_directory(p.dir, ec)) {
    if (!ec) return Fail(Errc::kAlreadyExists, "sandbox " + spec.id + " exists");
    return Fail(Errc::kUnavailable, "create " + p.dir.string() + ": " + ec.message());
  }
  bool keep_dir = false;
  auto remove_dir = ScopeExit([&] {
    if (!keep_dir) {
      std::error_code ignored;
      fs::remove_all(p.dir, ignored);
    }
  });
  if (chown(p.dir.c_str(), options_.qemu_uid, options_.qemu_gid) < 0 || chmod(p.dir.c_str(), 0700) < 0) {
    return FailErrno("own " + p.dir.string());
  }
  if (spec.files_from) {
    fs::copy_file(*spec.files_from / "disk.qcow2", p.overlay, ec);
    if (ec) return Fail(Errc::kUnavailable, "copy the paused guest's disk: " + ec.message());
  } else {
    KILN_TRY(CreateOverlay(snap.disk, "qcow2", p.overlay));
  }
  if (chown(p.overlay.c_str(), options_.qemu_uid, options_.qemu_gid) < 0 ||
      chmod(p.overlay.c_str(), 0600) < 0) {
    return FailErrno("own " + p.overlay.string());
  }

  KILN_ASSIGN_OR_RETURN(p.netns, net::NetNamespace::Create());
  if (options_.network) {
    KILN_ASSIGN_OR_RETURN(p.link, options_.network->Attach(p.netns.get(), spec.egress.internet));
  }
  KILN_ASSIGN_OR_RETURN(UniqueFd tap, net::CreateGuestLink(p.netns.get(), net::GuestLinkConfig{}));
  KILN_ASSIGN_OR_RETURN(p.cgroup, shared_->cgroups->Create(spec.id));
  cgroup::Limits limits;
  // The guest's RAM plus QEMU's own (TCG's code cache is 64 MiB).
  limits.memory_bytes = (uint64_t{snap.memory_mib} + 192) << 20;
  limits.pids = 256;  // QEMU's threads (its block I/O pool alone may grow to 64)
  limits.cpu_millis = spec.limits.cpu_millis;
  KILN_TRY(p.cgroup->SetLimits(limits));

  QemuLaunch launch;
  launch.config = shared_->machine;
  launch.config.memory_mib = snap.memory_mib;
  launch.config.memory_file = snap.ram;
  launch.config.memory_shared = false;
  launch.config.disks = {{p.overlay, "qcow2", false}, {snap.agent_image, "raw", true}};
  launch.config.incoming_defer = true;
  launch.config.serial = options_.console == "null"
                             ? "null"
                             : "file:" + (fs::path(options_.console) / (spec.id + ".log")).string();
  launch.run_dir = p.dir;
  launch.uid = options_.qemu_uid;
  launch.gid = options_.qemu_gid;
  launch.netns_fd = p.netns.get();
  launch.tap_fd = tap.get();
  launch.cgroup = p.cgroup.get();
  launch.timeout = options_.timeout;
  KILN_ASSIGN_OR_RETURN(p.qemu, QemuProcess::Start(std::move(launch)));
  tap.reset();  // QEMU holds the tap now

  Json caps = Json::array();
  // A template snapshot's RAM is the file QEMU maps; a paused sandbox's is in its stream.
  caps.push_back(Json{{"capability", "x-ignore-shared"}, {"state", !spec.files_from}});
  caps.push_back(Json{{"capability", "events"}, {"state", true}});
  KILN_TRY(p.qemu->Execute("migrate-set-capabilities", Json{{"capabilities", caps}}));
  UniqueFd state(open(snap.state.c_str(), O_RDONLY | O_CLOEXEC));
  if (!state) return FailErrno("open " + snap.state.string());
  KILN_TRY(p.qemu->SendFd("incoming", state.get()));
  state.reset();
  KILN_TRY(p.qemu->Execute("migrate-incoming", Json{{"uri", "fd:incoming"}}));
  KILN_TRY(p.qemu->WaitMigration(spec.files_from ? std::chrono::milliseconds(std::chrono::minutes(2))
                                                 : options_.timeout));
  KILN_ASSIGN_OR_RETURN(std::string run_state, p.qemu->RunState());
  if (run_state != "running") KILN_TRY(p.qemu->Execute("cont"));
  keep_dir = true;
  return std::unique_ptr<Instance>(new VmInstance(std::move(p)));
}

void VmRuntime::RemoveStateDirIfEmpty() {
  // rmdir fails on a directory that is not empty, which is what keeps it then.
  rmdir(shared_->sandboxes_dir.c_str());
  rmdir(options_.state_dir.c_str());
}

Status VmRuntime::CleanupStale() {
  KILN_TRY(shared_->cgroups->RemoveLeftovers());
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(shared_->sandboxes_dir, ec)) {
    fs::remove_all(entry.path(), ec);
    if (ec) return Fail(Errc::kInternal, "remove " + entry.path().string() + ": " + ec.message());
  }
  if (ec) return Fail(Errc::kInternal, "list " + shared_->sandboxes_dir.string() + ": " + ec.message());
  return {};
}

}  // namespace kiln::kilnd::vm
