#include "kilnd/runtime/ns/ns_runtime.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <system_error>
#include <vector>

#include "base/log.h"
#include "kilnd/runtime/ns/linux_api.h"
#include "kilnd/runtime/ns/ns_instance.h"
#include "kilnd/runtime/ns/sandbox_child.h"
#include "sys/tree_copy.h"

namespace kiln::kilnd::ns {
namespace {

using Clock = std::chrono::steady_clock;

// Docker's default capability set: what root inside a sandbox keeps (within its namespaces).
constexpr int kKeptCaps[] = {CAP_CHOWN,       CAP_DAC_OVERRIDE, CAP_FSETID,     CAP_FOWNER,
                             CAP_MKNOD,       CAP_NET_RAW,      CAP_SETGID,     CAP_SETUID,
                             CAP_SETFCAP,     CAP_SETPCAP,      CAP_NET_BIND_SERVICE,
                             CAP_SYS_CHROOT,  CAP_KILL,         CAP_AUDIT_WRITE};

constexpr const char* kEnvdTarget = ".kiln/envd";
constexpr const char* kEnvdPath = "/.kiln/envd";
constexpr const char* kInterpTarget = ".kiln/interp";

uint64_t KeptCapMask() {
  uint64_t mask = 0;
  for (int cap : kKeptCaps) mask |= uint64_t{1} << cap;
  return mask;
}

int ReadCapLast() {
  std::ifstream in("/proc/sys/kernel/cap_last_cap");
  int last = CAP_LAST_CAP;
  if (in >> last && last > 0 && last < 64) return last;
  return CAP_LAST_CAP;
}

Status CheckId(const std::string& id) {
  bool ok = !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  });
  if (!ok) return Fail(Errc::kInvalidArgument, "invalid sandbox id \"" + log::Sanitize(id) + "\"");
  return {};
}

Status CheckHostname(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
  });
  if (!ok) return Fail(Errc::kInvalidArgument, "invalid hostname \"" + log::Sanitize(name) + "\"");
  return {};
}

Status WriteProcFile(const std::string& path, const std::string& value) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + path);
  if (write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    return FailErrno("write " + path);
  }
  return {};
}

// The writable layer: a tmpfs of `size` bytes made with the new mount API, so it never
// appears in the host's mount table (the child attaches it inside its own mount namespace).
Result<UniqueFd> MakeLayerMount(uint64_t size) {
  UniqueFd fs(fsopen("tmpfs", FSOPEN_CLOEXEC));
  if (!fs) return FailErrno("fsopen tmpfs");
  auto set = [&fs](const char* key, const std::string& value) -> Status {
    if (fsconfig(fs.get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) < 0) {
      return FailErrno("tmpfs option " + std::string(key) + "=" + value);
    }
    return {};
  };
  KILN_TRY(set("size", std::to_string(size)));
  KILN_TRY(set("mode", "0755"));
  // One inode per 4 KiB of space at most, so small files cannot exhaust kernel memory beyond
  // what the size allows.
  KILN_TRY(set("nr_inodes", std::to_string(std::max<uint64_t>(size / 4096, 1024))));
  if (fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    return FailErrno("create tmpfs");
  }
  UniqueFd mnt(fsmount(fs.get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID));
  if (!mnt) return FailErrno("fsmount tmpfs");
  return mnt;
}

struct Layer {
  UniqueFd mount;
  UniqueFd upper;
};

// etc/resolv.conf in the upper dir (shadowing the template's), owned by the sandbox's root.
Status WriteResolvConf(int upper, const std::string& content, uid_t uid, gid_t gid) {
  if (mkdirat(upper, "etc", 0755) < 0) {
    if (errno != EEXIST) return FailErrno("mkdir etc in the writable layer");
  } else if (fchownat(upper, "etc", uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
    return FailErrno("chown etc in the writable layer");
  }
  UniqueFd etc(openat(upper, "etc", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!etc) return FailErrno("open etc in the writable layer");
  // A restored layer may hold the sandbox's own resolv.conf (or a symlink): replace it.
  (void)unlinkat(etc.get(), "resolv.conf", 0);
  UniqueFd f(openat(etc.get(), "resolv.conf", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0644));
  if (!f) return FailErrno("create etc/resolv.conf");
  if (write(f.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    return FailErrno("write etc/resolv.conf");
  }
  if (fchown(f.get(), uid, gid) < 0) return FailErrno("chown etc/resolv.conf");
  return {};
}

// upper/ (what the sandbox writes; its root takes the template root's mode), work/ and the
// agent's mount point .kiln/envd, owned by the sandbox's root.
Result<Layer> MakeLayer(const InstanceSpec& spec, uid_t uid, gid_t gid) {
  Layer layer;
  KILN_ASSIGN_OR_RETURN(layer.mount, MakeLayerMount(spec.limits.disk_bytes));
  int m = layer.mount.get();
  struct stat root{};
  if (stat(spec.rootfs.c_str(), &root) < 0) return FailErrno("stat " + spec.rootfs.string());
  if (mkdirat(m, "upper", root.st_mode & 07777) < 0 || mkdirat(m, "work", 0700) < 0) {
    return FailErrno("mkdir in the writable layer");
  }
  for (const char* dir : {"upper", "work"}) {
    if (fchownat(m, dir, uid, gid, 0) < 0) return FailErrno("chown writable layer");
  }
  layer.upper.reset(openat(m, "upper", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!layer.upper) return FailErrno("open upper dir");
  int u = layer.upper.get();
  if (spec.files_from) {
    UniqueFd src(open(spec.files_from->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!src) return FailErrno("open files_from " + spec.files_from->string());
    sys::TreeCopyOptions options;
    options.skip_top_level = {".kiln"};
    auto copied = sys::CopyTree(src.get(), u, options);
    if (!copied) return Unexpected(std::move(copied).error().Wrap("restore files"));
  }
  if (!spec.resolv_conf.empty()) KILN_TRY(WriteResolvConf(u, spec.resolv_conf, uid, gid));
  if (mkdirat(u, ".kiln", 0755) < 0 || fchownat(u, ".kiln", uid, gid, 0) < 0) {
    return FailErrno("mkdir .kiln in the writable layer");
  }
  for (const char* target : {kEnvdTarget, kInterpTarget}) {
    if (target == kInterpTarget && spec.interp_binary.empty()) continue;
    UniqueFd stub(openat(u, target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755));
    if (!stub || fchown(stub.get(), uid, gid) < 0) return FailErrno(std::string("create ") + target);
  }
  return layer;
}

// A read-only, detached bind mount of the agent binary or kiln-interp (attached by the child).
Result<UniqueFd> CloneEnvd(const std::filesystem::path& envd) {
  UniqueFd tree(open_tree(AT_FDCWD, envd.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (!tree) return FailErrno("open_tree " + envd.string());
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (mount_setattr(tree.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
    return FailErrno("make " + envd.string() + " read-only");
  }
  return tree;
}

// The template rootfs, read-only and idmapped into the sandbox's user namespace: files of
// host uid 0 appear as uid 0 inside (measured-host.md §1.2).
Result<UniqueFd> CloneIdmappedRootfs(const std::filesystem::path& rootfs, pid_t child) {
  UniqueFd userns(open(("/proc/" + std::to_string(child) + "/ns/user").c_str(),
                       O_RDONLY | O_CLOEXEC));
  if (!userns) return FailErrno("open user namespace of " + std::to_string(child));
  UniqueFd tree(open_tree(AT_FDCWD, rootfs.c_str(),
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
  if (!tree) return FailErrno("open_tree " + rootfs.string());
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV;
  attr.userns_fd = static_cast<uint64_t>(userns.get());
  if (mount_setattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) {
    return FailErrno("idmap " + rootfs.string());
  }
  return tree;
}

Status SendGo(int sock, int lower_fd) {
  char byte = 'g';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cm), &lower_fd, sizeof lower_fd);
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) != 1) return FailErrno("send setup go to sandbox child");
  return {};
}

// Waits for the child's verdict: EOF = it reached exec; a ChildReport = the stage that failed.
Status WaitForExec(int sock, std::chrono::milliseconds timeout) {
  pollfd p{sock, POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, static_cast<int>(timeout.count()));
  } while (r < 0 && errno == EINTR);
  if (r == 0) return Fail(Errc::kTimeout, "sandbox setup: no answer from the child");
  ChildReport report{};
  ssize_t n = recv(sock, &report, sizeof report, 0);
  if (n == 0) return {};
  if (n != sizeof report) {
    return Fail(Errc::kInternal, "sandbox setup: the child died without a report");
  }
  return Unexpected(Error::FromErrno(report.err, std::string("sandbox setup: ") +
                                                     ChildStageName(report.stage)));
}

// Strings and arrays a ChildPlan points into.
struct PlanStorage {
  std::string hostname;
  std::string overlay_options;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::vector<char*> argv;
  std::vector<char*> envp;
};

std::vector<char*> CArray(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

NsRuntime::NsRuntime(NsRuntimeOptions options, std::unique_ptr<cgroup::CgroupBackend> cgroups,
                     SeccompProgram seccomp, int cap_last)
    : options_(std::move(options)),
      cgroups_(std::move(cgroups)),
      seccomp_(std::move(seccomp)),
      cap_last_(cap_last),
      mnt_layer_(options_.state_dir / "mnt" / "layer"),
      mnt_lower_(options_.state_dir / "mnt" / "lower"),
      mnt_root_(options_.state_dir / "mnt" / "root"),
      sandboxes_dir_(options_.state_dir / "sandboxes") {}

Result<std::unique_ptr<NsRuntime>> NsRuntime::Create(
    const NsRuntimeOptions& options, std::unique_ptr<cgroup::CgroupBackend> cgroups) {
  NsRuntimeOptions opts = options;
  if (opts.state_dir.empty()) opts.state_dir = std::filesystem::path("/run/kiln") / opts.name;
  std::string dir = opts.state_dir.string();
  if (dir.find_first_of(",:\\") != std::string::npos || !opts.state_dir.is_absolute()) {
    return Fail(Errc::kInvalidArgument,
                "state dir must be absolute and free of ',', ':' and '\\': " + dir);
  }
  if (opts.id_count == 0 || opts.uid_base == 0 || opts.gid_base == 0) {
    return Fail(Errc::kInvalidArgument, "the sandbox id range must not include host root");
  }
  if (!cgroups) {
    KILN_ASSIGN_OR_RETURN(cgroups, cgroup::CgroupBackend::Detect("kiln-" + opts.name));
  }
  KILN_ASSIGN_OR_RETURN(SeccompProgram seccomp, CompileSandboxSeccompPolicy());
  std::unique_ptr<NsRuntime> rt(
      new NsRuntime(std::move(opts), std::move(cgroups), std::move(seccomp), ReadCapLast()));
  for (const auto& d : {rt->mnt_layer_, rt->mnt_lower_, rt->mnt_root_, rt->sandboxes_dir_}) {
    std::error_code ec;
    std::filesystem::create_directories(d, ec);
    if (ec) return Fail(Errc::kUnavailable, "create " + d.string() + ": " + ec.message());
  }
  chmod(rt->options_.state_dir.c_str(), 0711);
  KILN_LOG(Info, "ns runtime ready", {"cgroups", rt->cgroups_->kind()},
           {"seccomp_insns", rt->seccomp_.size()}, {"state_dir", rt->options_.state_dir.string()},
           {"network", rt->options_.network ? "veth" : "loopback only"});
  return rt;
}

NsRuntime::~NsRuntime() { cgroups_->RemoveParentIfEmpty(); }

void NsRuntime::RemoveStateDirIfEmpty() {
  // rmdir leaves a directory that still holds something (a live sandbox's dir) alone.
  for (const auto& d : {mnt_root_, mnt_lower_, mnt_layer_, mnt_layer_.parent_path(), sandboxes_dir_,
                        options_.state_dir}) {
    (void)rmdir(d.c_str());
  }
}

Status NsRuntime::CleanupStale() {
  KILN_TRY(cgroups_->RemoveLeftovers());
  if (!options_.network) KILN_TRY(net::HostNetwork::RemoveLeftovers(options_.name));
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(sandboxes_dir_, ec)) {
    std::filesystem::remove_all(entry.path(), ec);
    if (ec) return Fail(Errc::kInternal, "remove " + entry.path().string() + ": " + ec.message());
  }
  if (ec) return Fail(Errc::kInternal, "list " + sandboxes_dir_.string() + ": " + ec.message());
  return {};
}

namespace {

Status ValidateSpec(const InstanceSpec& spec) {
  KILN_TRY(CheckId(spec.id));
  KILN_TRY(CheckHostname(spec.hostname));
  std::error_code ec;
  if (!std::filesystem::is_directory(spec.rootfs, ec)) {
    return Fail(Errc::kInvalidArgument, "rootfs " + spec.rootfs.string() + " is not a directory");
  }
  if (!std::filesystem::is_regular_file(spec.envd_binary, ec)) {
    return Fail(Errc::kInvalidArgument, "kiln-envd " + spec.envd_binary.string() + " not found");
  }
  if (!spec.interp_binary.empty() && !std::filesystem::is_regular_file(spec.interp_binary, ec)) {
    return Fail(Errc::kInvalidArgument, "kiln-interp " + spec.interp_binary.string() + " not found");
  }
  if (spec.limits.disk_bytes < (1 << 20)) {
    return Fail(Errc::kInvalidArgument, "disk limit below 1 MiB");
  }
  return {};
}

// Builds one sandbox step by step. Until Finish() hands everything to an NsInstance, the
// destructor undoes what was done: the child is killed first, then the rest is released by
// its owners (cgroup, network link, layer mount) and the host directory is removed.
class SandboxBuilder {
 public:
  SandboxBuilder(const NsRuntimeOptions& options, const InstanceSpec& spec)
      : o_(options), spec_(spec) {}
  ~SandboxBuilder() {
    if (finished_) return;
    parts_.init.Kill();
    (void)parts_.init.Reap();
    std::error_code ignored;
    if (made_dir_) std::filesystem::remove_all(parts_.sandbox_dir, ignored);
  }

  // Host side, before the clone: sandbox dir, agent log, cgroup, writable layer, agent mount.
  Status PrepareHost(const std::filesystem::path& sandboxes_dir, cgroup::CgroupBackend& cgroups) {
    parts_.id = spec_.id;
    parts_.timeout = o_.timeout;
    parts_.cpu_count = std::max<uint32_t>(1, (spec_.limits.cpu_millis + 999) / 1000);
    parts_.sandbox_dir = sandboxes_dir / spec_.id;
    if (mkdir(parts_.sandbox_dir.c_str(), 0700) < 0) {
      if (errno == EEXIST) return Fail(Errc::kAlreadyExists, "sandbox exists already");
      return FailErrno("mkdir " + parts_.sandbox_dir.string());
    }
    made_dir_ = true;
    if (o_.envd_log) {
      log_fd_.reset(open((parts_.sandbox_dir / "envd.log").c_str(),
                         O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
      if (!log_fd_) return FailErrno("open agent log");
    }
    KILN_ASSIGN_OR_RETURN(parts_.cgroup, cgroups.Create(spec_.id));
    KILN_TRY(parts_.cgroup->SetLimits(
        {spec_.limits.memory_bytes, spec_.limits.pids, spec_.limits.cpu_millis}));
    t_cgroup_ = Clock::now();
    KILN_ASSIGN_OR_RETURN(Layer layer, MakeLayer(spec_, o_.uid_base, o_.gid_base));
    parts_.layer = std::move(layer.mount);
    parts_.upper = std::move(layer.upper);
    KILN_ASSIGN_OR_RETURN(envd_tree_, CloneEnvd(spec_.envd_binary));
    if (!spec_.interp_binary.empty()) {
      KILN_ASSIGN_OR_RETURN(interp_tree_, CloneEnvd(spec_.interp_binary));
    }
    t_prepared_ = Clock::now();
    return {};
  }

  // Fills the child's plan; `storage_` and the paths keep what it points to alive.
  void Plan(const ChildPlan& runtime_part, const std::filesystem::path& mnt_layer,
            const std::filesystem::path& mnt_lower) {
    storage_.overlay_options = "lowerdir=" + mnt_lower.string() +
                               ",upperdir=" + (mnt_layer / "upper").string() +
                               ",workdir=" + (mnt_layer / "work").string() + ",userxattr";
    storage_.args = {kEnvdPath, "--listen", "0.0.0.0", "--port", std::to_string(o_.envd_port)};
    storage_.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME=/root", "LANG=C.UTF-8"};
    storage_.argv = CArray(storage_.args);
    storage_.envp = CArray(storage_.env);
    plan_ = runtime_part;
    plan_.layer_fd = parts_.layer.get();
    plan_.envd_fd = envd_tree_.get();
    plan_.interp_fd = interp_tree_ ? interp_tree_.get() : -1;
    plan_.interp_target = kInterpTarget;
    plan_.log_fd = log_fd_.get();
    plan_.hostname = spec_.hostname.c_str();
    plan_.overlay_options = storage_.overlay_options.c_str();
    plan_.envd_target = kEnvdTarget;
    plan_.envd_path = kEnvdPath;
    plan_.argv = storage_.argv.data();
    plan_.envp = storage_.envp.data();
  }

  // clone3 into new namespaces and the sandbox's cgroup. `clone_mu` is held from creating the
  // socket pair until the child's end is closed here, so no other child inherits that end
  // (it would delay our EOF = "exec done").
  Status Spawn(std::mutex& clone_mu) {
    std::lock_guard lock(clone_mu);
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
      return FailErrno("socketpair");
    }
    sync_.reset(pair[0]);
    UniqueFd child_end(pair[1]);
    plan_.sync_fd = child_end.get();
    int pidfd = -1;
    clone_args args{};
    args.flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC |
                 CLONE_NEWUTS | CLONE_PIDFD | CLONE_INTO_CGROUP;
    args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    args.exit_signal = SIGCHLD;
    args.cgroup = static_cast<uint64_t>(parts_.cgroup->clone_into_fd());
    pid_t pid = linux_api::Clone3(&args);
    if (pid == 0) RunSandboxChild(plan_);
    if (pid < 0) return FailErrno("clone3");
    parts_.init = ChildProcess(pid, UniqueFd(pidfd));
    proc_ = "/proc/" + std::to_string(pid);
    t_cloned_ = Clock::now();
    return {};
  }

  // While the child waits: id maps and OOM score, then the go message carrying the idmapped
  // rootfs (which needs the child's user namespace).
  Status ConfigureChild() {
    auto map = [](uint32_t base, uint32_t count) {
      return "0 " + std::to_string(base) + " " + std::to_string(count) + "\n";
    };
    KILN_TRY(WriteProcFile(proc_ + "/uid_map", map(o_.uid_base, o_.id_count)));
    KILN_TRY(WriteProcFile(proc_ + "/gid_map", map(o_.gid_base, o_.id_count)));
    KILN_TRY(WriteProcFile(proc_ + "/oom_score_adj", std::to_string(o_.oom_score_adj)));
    KILN_ASSIGN_OR_RETURN(UniqueFd lower, CloneIdmappedRootfs(spec_.rootfs, parts_.init.pid()));
    KILN_TRY(SendGo(sync_.get(), lower.get()));
    envd_tree_.reset();
    interp_tree_.reset();
    t_go_ = Clock::now();
    return {};
  }

  // Runs while the child builds its root file system: the hierarchies clone3 did not cover
  // (cgroup v1), then the message that lets the child go on to exec.
  Status AttachCgroups() {
    KILN_TRY(parts_.cgroup->Attach(parts_.init.pid(), /*cloned_into=*/true));
    char byte = 'c';
    if (send(sync_.get(), &byte, 1, MSG_NOSIGNAL) != 1) {
      return FailErrno("send cgroups-ready to sandbox child");
    }
    t_cgroups_ = Clock::now();
    return {};
  }

  // Runs while the child builds its root file system.
  Status AttachNetwork() {
    parts_.netns.reset(open((proc_ + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
    if (!parts_.netns) return FailErrno("open network namespace");
    if (o_.network) {
      KILN_ASSIGN_OR_RETURN(parts_.link, o_.network->Attach(parts_.netns.get(),
                                                            spec_.egress.internet));
    }
    t_net_ = Clock::now();
    return {};
  }

  Status AwaitExec() {
    KILN_TRY(WaitForExec(sync_.get(), o_.timeout));
    // EOF also comes from a child that died before exec without a report (e.g. SIGKILLed).
    if (parts_.init.Exited()) return Fail(Errc::kInternal, "sandbox init exited during setup");
    return {};
  }

  std::unique_ptr<Instance> Finish(Clock::time_point start) {
    auto done = Clock::now();
    auto us = [](auto d) {
      return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    };
    KILN_LOG(Debug, "sandbox started", {"sandbox", spec_.id}, {"init_pid", parts_.init.pid()},
             {"total_us", us(done - start)}, {"cgroup_us", us(t_cgroup_ - start)},
             {"layer_us", us(t_prepared_ - t_cgroup_)}, {"clone_us", us(t_cloned_ - t_prepared_)},
             {"maps_idmap_us", us(t_go_ - t_cloned_)}, {"cgroups_us", us(t_cgroups_ - t_go_)},
             {"net_us", us(t_net_ - t_cgroups_)},
             {"child_wait_us", us(done - t_net_)});
    finished_ = true;
    return std::make_unique<NsInstance>(std::move(parts_));
  }

 private:
  const NsRuntimeOptions& o_;
  const InstanceSpec& spec_;
  NsInstanceParts parts_;
  bool made_dir_ = false;
  bool finished_ = false;
  UniqueFd log_fd_;
  UniqueFd envd_tree_;
  UniqueFd interp_tree_;
  UniqueFd sync_;
  PlanStorage storage_;
  ChildPlan plan_;
  std::string proc_;
  Clock::time_point t_cgroup_, t_prepared_, t_cloned_, t_go_, t_cgroups_, t_net_;
};

}  // namespace

Result<std::unique_ptr<Instance>> NsRuntime::Create(const InstanceSpec& spec) {
  auto start = Clock::now();
  auto built = [&]() -> Result<std::unique_ptr<Instance>> {
    KILN_TRY(ValidateSpec(spec));
    SandboxBuilder b(options_, spec);
    KILN_TRY(b.PrepareHost(sandboxes_dir_, *cgroups_));
    ChildPlan common;
    common.mnt_layer = mnt_layer_.c_str();
    common.mnt_lower = mnt_lower_.c_str();
    common.mnt_root = mnt_root_.c_str();
    common.seccomp = seccomp_.prog();
    common.keep_caps = KeptCapMask();
    common.cap_last = cap_last_;
    common.no_new_privs = options_.no_new_privs;
    b.Plan(common, mnt_layer_, mnt_lower_);
    KILN_TRY(b.Spawn(clone_mu_));
    KILN_TRY(b.ConfigureChild());
    KILN_TRY(b.AttachCgroups());
    KILN_TRY(b.AttachNetwork());
    KILN_TRY(b.AwaitExec());
    return b.Finish(start);
  }();
  if (!built) return Unexpected(std::move(built).error().Wrap("create sandbox " + spec.id));
  return built;
}

}  // namespace kiln::kilnd::ns
