#include "kilnd/runtime/vm/template_snapshot.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/unique_fd.h"
#include "kilnd/net/guest_link.h"
#include "kilnd/net/netns.h"
#include "kilnd/runtime/vm/disk_image.h"
#include "kilnd/runtime/vm/file_io.h"
#include "kilnd/runtime/vm/guest_agent.h"
#include "kilnd/runtime/vm/qemu_process.h"

namespace kiln::kilnd::vm {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string FileStamp(const fs::path& path) {
  struct stat st {};
  if (path.empty() || stat(path.c_str(), &st) != 0) return "-";
  return std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_ino);
}

}  // namespace

uint64_t Fnv1a(std::string_view text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

namespace {

std::string SafeName(std::string_view name) {
  std::string out;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    out += ok ? c : '_';
  }
  return out.empty() ? "template" : out.substr(0, 64);
}

}  // namespace

TemplateSnapshot SnapshotLayout(const fs::path& dir, uint32_t memory_mib) {
  TemplateSnapshot s;
  s.dir = dir;
  s.root_image = dir / "root.ext4";
  s.agent_image = dir / "agent.ext4";
  s.disk = dir / "disk.qcow2";
  s.ram = dir / "ram";
  s.state = dir / "state";
  s.memory_mib = memory_mib;
  return s;
}

namespace {

// A file QEMU (running as uid/gid) opens read-write, created here with `size` bytes.
Status PrepareOwnedFile(const fs::path& path, uint64_t size, uid_t uid, gid_t gid, mode_t mode) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, mode));
  if (!fd) return FailErrno("create " + path.string());
  if (size > 0 && ftruncate(fd.get(), static_cast<off_t>(size)) < 0) {
    return FailErrno("size " + path.string());
  }
  if (fchown(fd.get(), uid, gid) < 0) return FailErrno("chown " + path.string());
  if (fchmod(fd.get(), mode) < 0) return FailErrno("chmod " + path.string());
  return {};
}

Status MakeReadOnly(const fs::path& path) {
  if (chown(path.c_str(), 0, 0) < 0) return FailErrno("chown " + path.string());
  if (chmod(path.c_str(), 0644) < 0) return FailErrno("chmod " + path.string());
  return {};
}

std::string ConsoleTail(const fs::path& log) {
  auto text = ReadWholeFile(log, 16u << 20);
  if (!text || text->empty()) return "";
  std::string t = text->size() > 2000 ? text->substr(text->size() - 2000) : *text;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  return "; guest console: " + t;
}

// Boots the template once and saves it. `dir` exists and holds the images.
Status BootAndSave(const SnapshotBuild& b, const TemplateSnapshot& s) {
  fs::path console = s.dir / "console.log";
  KILN_TRY(PrepareOwnedFile(console, 0, b.qemu_uid, b.qemu_gid, 0600));
  KILN_TRY(PrepareOwnedFile(s.ram, uint64_t{b.machine.memory_mib} << 20, b.qemu_uid, b.qemu_gid,
                            0600));
  if (chown(s.disk.c_str(), b.qemu_uid, b.qemu_gid) < 0) return FailErrno("chown " + s.disk.string());

  KILN_ASSIGN_OR_RETURN(net::NetNamespace netns, net::NetNamespace::Create());
  net::GuestLinkConfig link;
  link.masquerade = false;  // the template boot has no way out
  KILN_ASSIGN_OR_RETURN(UniqueFd tap, net::CreateGuestLink(netns.get(), link));

  QemuLaunch launch;
  launch.config = b.machine;
  launch.config.memory_file = s.ram;
  launch.config.memory_shared = true;
  launch.config.disks = {{s.disk, "qcow2", false}, {s.agent_image, "raw", true}};
  launch.config.serial = "file:" + console.string();
  launch.run_dir = s.dir;
  launch.uid = b.qemu_uid;
  launch.gid = b.qemu_gid;
  launch.netns_fd = netns.get();
  launch.tap_fd = tap.get();
  launch.timeout = b.qmp_timeout;
  auto t0 = Clock::now();
  KILN_ASSIGN_OR_RETURN(auto qemu, QemuProcess::Start(std::move(launch)));
  tap.reset();

  auto ready = WaitGuestAgent(netns.get(), qemu->pidfd(), Clock::now() + b.boot_timeout);
  if (!ready) {
    qemu->Kill();
    return Fail(ready.error().code(),
                "template boot: " + ready.error().message() + ConsoleTail(console));
  }
  if (b.service) {
    auto started = StartGuestService(netns.get(), qemu->pidfd(), b.service->cmd, b.service->port,
                                     b.service->path, Clock::now() + b.boot_timeout);
    if (!started) {
      qemu->Kill();
      return Fail(started.error().code(), "template service: " + started.error().message() +
                                              ConsoleTail(console));
    }
  }
  // Before the save, what every sandbox would otherwise do for itself: a login bash (the way
  // the SDK runs commands) reads bash, its libraries and the profile scripts into the guest's
  // page cache, which the sandboxes then share through the snapshot instead of each reading
  // them into memory of its own; `sync` leaves no writeback and journal commit behind for
  // every restored guest to run (and, under TCG, to translate). Best effort: a template
  // without bash still works.
  for (const std::vector<std::string>& argv : {std::vector<std::string>{"/bin/bash", "-l", "-c", "true"},
                                               std::vector<std::string>{"/bin/sync"}}) {
    if (auto st = RunGuestCommand(netns.get(), argv, Clock::now() + b.boot_timeout); !st) {
      KILN_LOG(Warn, "vm template snapshot: guest warm-up step failed", {"template", b.template_name},
               {"error", st.error().message()});
    }
  }
  auto t_ready = Clock::now();

  Json caps = Json::array();
  caps.push_back(Json{{"capability", "x-ignore-shared"}, {"state", true}});
  caps.push_back(Json{{"capability", "events"}, {"state", true}});
  KILN_TRY(qemu->Execute("migrate-set-capabilities", Json{{"capabilities", caps}}));
  UniqueFd state(open(s.state.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!state) return FailErrno("create " + s.state.string());
  KILN_TRY(qemu->SendFd("snapshot", state.get()));
  state.reset();
  KILN_TRY(qemu->Execute("migrate", Json{{"uri", "fd:snapshot"}}));
  KILN_TRY(qemu->WaitMigration(std::chrono::seconds(120)));
  KILN_TRY(qemu->Quit());
  auto t_saved = Clock::now();
  KILN_LOG(Info, "vm template snapshot saved", {"template", b.template_name},
           {"boot_ms", std::chrono::duration_cast<std::chrono::milliseconds>(t_ready - t0).count()},
           {"save_ms",
            std::chrono::duration_cast<std::chrono::milliseconds>(t_saved - t_ready).count()});
  // Sandboxes only read the disk from now on; the RAM file stays QEMU's (QEMU 7.2 opens it
  // read-write even to map it privately).
  KILN_TRY(MakeReadOnly(s.disk));
  return {};
}

}  // namespace

std::string GuestCmdline() {
  return std::string("kiln.agent=/dev/vdb kiln.net=") + kGuestAddressCidr + "," + kGuestGateway +
         " kiln.dns=" + kGuestGateway + " kiln.hostname=sandbox";
}

Result<std::string> SnapshotKey(const SnapshotBuild& b) {
  Json k = Json::object();
  k["format"] = 2;  // the devices' configuration (2: virtio-net guest_announce=off)
  k["rootfs"] = fs::absolute(b.rootfs).string();
  k["rootfs_stamp"] = FileStamp(b.rootfs);
  auto info = ReadWholeFile(b.rootfs.parent_path() / "template.json", 1u << 20);
  k["template_json"] = info ? std::to_string(Fnv1a(*info)) : "-";
  k["envd"] = FileStamp(b.envd_binary);
  k["interp"] = FileStamp(b.interp_binary);
  k["qemu"] = FileStamp(b.machine.qemu);
  k["kernel"] = FileStamp(b.machine.kernel) + " " + b.kernel_release;
  k["initrd"] = b.initrd_hash;
  k["accel"] = b.machine.accel;
  k["cpu"] = b.machine.cpu;
  k["cpus"] = b.machine.cpus;
  k["memory_mib"] = b.machine.memory_mib;
  k["cmdline"] = b.cmdline_key;
  k["disk_extra"] = b.disk_extra_bytes;
  k["qemu_uid"] = b.qemu_uid;
  if (b.service) {
    k["service"] = b.service->cmd;
    k["service_ready"] = std::to_string(b.service->port) + b.service->path;
  }
  return k.dump();
}

Result<TemplateSnapshot> EnsureTemplateSnapshot(const SnapshotBuild& b, UniqueFd* hold) {
  KILN_ASSIGN_OR_RETURN(std::string key, SnapshotKey(b));
  fs::path root = b.snapshot_root;
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return Fail(Errc::kUnavailable, "create " + root.string() + ": " + ec.message());
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(Fnv1a(key)));
  fs::path dir = root / (SafeName(b.template_name) + "-" + hash);
  TemplateSnapshot s = SnapshotLayout(dir, b.machine.memory_mib);

  UniqueFd lock(open((root / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return FailErrno("open snapshot lock");
  if (flock(lock.get(), LOCK_EX) < 0) return FailErrno("lock snapshots");

  if (auto have = ReadWholeFile(dir / "snapshot.json", 1u << 20); have && *have == key) {
    if (hold) {
      KILN_ASSIGN_OR_RETURN(*hold, HoldTemplateSnapshot(dir));
    }
    return s;
  }
  fs::remove_all(dir, ec);
  if (ec) return Fail(Errc::kUnavailable, "remove " + dir.string() + ": " + ec.message());
  fs::create_directories(dir, ec);
  if (ec) return Fail(Errc::kUnavailable, "create " + dir.string() + ": " + ec.message());
  chmod(dir.c_str(), 0755);

  KILN_LOG(Info, "building vm template snapshot", {"template", b.template_name},
           {"dir", dir.string()});
  auto t0 = Clock::now();
  auto fail = [&dir](Error e) -> Result<TemplateSnapshot> {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
    return Unexpected(std::move(e));
  };
  TemplateImageOptions image;
  image.extra_bytes = b.disk_extra_bytes;
  if (auto st = BuildTemplateImage(b.rootfs, s.root_image, image); !st) {
    return fail(std::move(st).error().Wrap("template image"));
  }
  std::vector<AgentFile> agent = {{b.envd_binary, "envd", 0755}};
  if (!b.interp_binary.empty()) agent.push_back({b.interp_binary, "interp", 0755});
  if (auto st = BuildAgentImage(agent, s.agent_image); !st) {
    return fail(std::move(st).error().Wrap("agent image"));
  }
  if (auto st = CreateOverlay(s.root_image, "raw", s.disk); !st) {
    return fail(std::move(st).error().Wrap("template disk"));
  }
  auto t_images = Clock::now();
  if (auto st = BootAndSave(b, s); !st) return fail(std::move(st).error());
  if (auto st = WriteWholeFile(dir / "snapshot.json", key, 0644); !st) {
    return fail(std::move(st).error());
  }
  if (hold) {
    KILN_ASSIGN_OR_RETURN(*hold, HoldTemplateSnapshot(dir));
  }
  KILN_LOG(Info, "vm template snapshot ready", {"template", b.template_name},
           {"images_ms",
            std::chrono::duration_cast<std::chrono::milliseconds>(t_images - t0).count()},
           {"total_ms",
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()});
  return s;
}

Result<UniqueFd> HoldTemplateSnapshot(const fs::path& dir) {
  UniqueFd fd(open((dir / "snapshot.json").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Fail(Errc::kNotFound, "no vm template snapshot in " + dir.string());
    return FailErrno("open " + (dir / "snapshot.json").string());
  }
  if (flock(fd.get(), LOCK_SH) < 0) return FailErrno("lock " + dir.string());
  return fd;
}

Status AddTemplateSnapshotRef(const fs::path& dir, const fs::path& pause_dir) {
  fs::path refs = dir / "refs";
  std::error_code ec;
  fs::create_directories(refs, ec);
  if (ec) return Fail(Errc::kUnavailable, "create " + refs.string() + ": " + ec.message());
  std::string path = fs::absolute(pause_dir).lexically_normal().string();
  char name[17];
  std::snprintf(name, sizeof name, "%016llx", static_cast<unsigned long long>(Fnv1a(path)));
  return WriteWholeFile(refs / name, path, 0644);
}

Status WritePausedVmInfo(const fs::path& pause_dir, const PausedVmInfo& info) {
  Json j = Json::object();
  j["snapshot"] = info.snapshot.string();
  j["memory_mib"] = info.memory_mib;
  return WriteWholeFile(pause_dir / kPausedVmInfo, j.dump(), 0644);
}

Result<PausedVmInfo> ReadPausedVmInfo(const fs::path& pause_dir) {
  fs::path file = pause_dir / kPausedVmInfo;
  KILN_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(file, 1u << 20));
  Json j = Json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("snapshot") || !j["snapshot"].is_string() ||
      j["snapshot"].get<std::string>().empty()) {
    return Fail(Errc::kInvalidArgument, "malformed " + file.string() + ": no \"snapshot\"");
  }
  PausedVmInfo info;
  info.snapshot = j["snapshot"].get<std::string>();
  if (j.contains("memory_mib")) {
    const Json& m = j["memory_mib"];
    if (!m.is_number_unsigned() || m.get<uint64_t>() > UINT32_MAX) {
      return Fail(Errc::kInvalidArgument, "malformed " + file.string() + ": bad \"memory_mib\"");
    }
    info.memory_mib = m.get<uint32_t>();
  }
  return info;
}

std::optional<std::string> SnapshotTemplateName(std::string_view dir_name) {
  constexpr size_t kHex = 16;
  if (dir_name.size() < kHex + 2 || dir_name[dir_name.size() - kHex - 1] != '-') return std::nullopt;
  if (!std::all_of(dir_name.end() - kHex, dir_name.end(),
                   [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; })) {
    return std::nullopt;
  }
  return std::string(dir_name.substr(0, dir_name.size() - kHex - 1));
}

namespace {

// Whether a paused sandbox still needs the snapshot in `dir`: some ref names a pause
// directory whose vm.json names `dir`. Stale refs are removed on the way.
bool Referenced(const fs::path& dir) {
  std::error_code ec;
  bool live = false;
  for (const auto& ref : fs::directory_iterator(dir / "refs", ec)) {
    auto pause_dir = ReadWholeFile(ref.path(), 1u << 16);
    if (pause_dir) {
      auto info = ReadPausedVmInfo(*pause_dir);
      if (!info && info.error().code() != Errc::kNotFound &&
          info.error().code() != Errc::kInvalidArgument) {
        return true;  // cannot tell: keep
      }
      std::error_code same;
      if (info && fs::equivalent(info->snapshot, dir, same)) {
        live = true;
        continue;
      }
    }
    std::error_code ignored;
    fs::remove(ref.path(), ignored);
  }
  return live;
}

uint64_t DiskUsage(const fs::path& dir) {
  uint64_t bytes = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    struct stat st {};
    if (lstat(e.path().c_str(), &st) == 0) bytes += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return bytes;
}

}  // namespace

Result<PruneReport> PruneTemplateSnapshots(const fs::path& root,
                                           const std::vector<std::string>& templates) {
  // <template>-<16 hex digits> of one of `templates`.
  auto ours = [&templates](const std::string& name) {
    std::optional<std::string> t = SnapshotTemplateName(name);
    return t && std::any_of(templates.begin(), templates.end(),
                            [&t](const std::string& x) { return SafeName(x) == *t; });
  };
  PruneReport report;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return report;
  UniqueFd lock(open((root / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return FailErrno("open snapshot lock");
  if (flock(lock.get(), LOCK_EX) < 0) return FailErrno("lock snapshots");
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const fs::path& dir = entry.path();
    std::error_code is_dir;
    if (dir.filename().string().starts_with(".") || !entry.is_directory(is_dir)) continue;
    // Held by a kilnd: its share lock makes this one fail. A directory without snapshot.json
    // is an interrupted build (builds run under the lock held here).
    UniqueFd key(open((dir / "snapshot.json").c_str(), O_RDONLY | O_CLOEXEC));
    if (key && (!ours(dir.filename().string()) || flock(key.get(), LOCK_EX | LOCK_NB) < 0)) continue;
    if (!key && errno != ENOENT) continue;
    if (Referenced(dir)) continue;
    uint64_t bytes = DiskUsage(dir);
    std::error_code rm;
    fs::remove_all(dir, rm);
    if (rm) {
      KILN_LOG(Warn, "could not remove an unused vm template snapshot", {"dir", dir.string()},
               {"error", rm.message()});
      continue;
    }
    report.removed.push_back(dir);
    report.bytes += bytes;
  }
  if (ec) return Fail(Errc::kUnavailable, "list " + root.string() + ": " + ec.message());
  return report;
}

}  // namespace kiln::kilnd::vm
