#include "kilnd/runtime/vm/guest_kernel.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/unique_fd.h"
#include "kilnd/runtime/vm/child_process.h"
#include "kilnd/runtime/vm/file_io.h"
#include "kilnd/runtime/vm/vmlinux.h"

namespace kiln::kilnd::vm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kKernelsDir[] = "kernels";
constexpr char kBuildPrefix[] = ".build-kernel-";
constexpr size_t kMaxBzImage = 128u << 20;

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r' || s.back() == '\t'))
    s.remove_suffix(1);
  return std::string(s);
}

Result<UniqueFd> LockCache(const fs::path& dir) {
  fs::path path = dir / ".lock";
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return FailErrno("open " + path.string());
  while (flock(fd.get(), LOCK_EX) < 0) {
    if (errno != EINTR) return FailErrno("flock " + path.string());
  }
  return fd;
}

// REQUIRES: the cache lock is held (no fetch of ours is running).
void RemoveStaleBuilds(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().starts_with(kBuildPrefix))
      fs::remove_all(entry.path(), ec);
  }
}

// The single entry of `dir` whose name starts with `prefix`.
Result<fs::path> OnlyEntry(const fs::path& dir, std::string_view prefix) {
  std::error_code ec;
  fs::path found;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.path().filename().string().starts_with(prefix)) continue;
    if (!found.empty())
      return Fail(Errc::kInvalidArgument,
                  "more than one " + std::string(prefix) + "* in " + dir.string());
    found = entry.path();
  }
  if (ec) return Fail(Errc::kInternal, "list " + dir.string() + ": " + ec.message());
  if (found.empty())
    return Fail(Errc::kNotFound, "no " + std::string(prefix) + "* in " + dir.string());
  return found;
}

Result<std::string> ResolvePackage(const GuestKernelOptions& options) {
  if (!options.package.empty()) return options.package;
  KILN_ASSIGN_OR_RETURN(std::string apt_cache, FindTool("apt-cache"));
  auto out = RunTool({apt_cache, "depends", options.metapackage}, "", options.tool_timeout);
  if (!out)
    return Unexpected(std::move(out).error().Wrap("apt-cache depends " + options.metapackage));
  auto pkg = ParseKernelDependency(out->out);
  if (!pkg) return Unexpected(std::move(pkg).error().Wrap(options.metapackage));
  return pkg;
}

// Unpacks the package in `build` and assembles the cache entry in `build`/out.
Status Unpack(const fs::path& build, const std::string& package,
              const GuestKernelOptions& options) {
  using Clock = std::chrono::steady_clock;
  auto ms_since = [](Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
  };
  Clock::time_point t0 = Clock::now();
  KILN_ASSIGN_OR_RETURN(std::string apt_get, FindTool("apt-get"));
  auto dl = RunTool({apt_get, "-q", "-o", "APT::Sandbox::User=root", "download", package},
                    build.string(), options.tool_timeout);
  if (!dl) return Unexpected(std::move(dl).error().Wrap("apt-get download " + package));
  KILN_ASSIGN_OR_RETURN(fs::path deb, OnlyEntry(build, package + "_"));
  long download_ms = ms_since(t0);
  Clock::time_point t1 = Clock::now();
  KILN_ASSIGN_OR_RETURN(std::string dpkg_deb, FindTool("dpkg-deb"));
  fs::path tree = build / "tree";
  auto x = RunTool({dpkg_deb, "-x", deb.string(), tree.string()}, "", options.tool_timeout);
  if (!x) return Unexpected(std::move(x).error().Wrap("dpkg-deb -x " + deb.string()));

  long unpack_ms = ms_since(t1);
  Clock::time_point t2 = Clock::now();
  KILN_ASSIGN_OR_RETURN(fs::path modules_root, OnlyEntry(tree / "lib/modules", ""));
  std::string release = modules_root.filename().string();
  KILN_ASSIGN_OR_RETURN(fs::path vmlinuz, OnlyEntry(tree / "boot", "vmlinuz-"));
  KILN_ASSIGN_OR_RETURN(std::string bzimage, ReadWholeFile(vmlinuz, kMaxBzImage));
  auto vmlinux = ExtractVmlinux(bzimage);
  if (!vmlinux) return Unexpected(std::move(vmlinux).error().Wrap(vmlinuz.string()));
  if (auto pvh = CheckPvhElf(*vmlinux); !pvh) {
    return Unexpected(std::move(pvh).error().Wrap("vmlinux from " + vmlinuz.string()));
  }

  long vmlinux_ms = ms_since(t2);
  fs::path out = build / "out";
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return Fail(Errc::kInternal, "create " + out.string() + ": " + ec.message());
  KILN_TRY(WriteWholeFile(out / "vmlinux", *vmlinux, 0644));
  if (auto config = OnlyEntry(tree / "boot", "config-")) fs::rename(*config, out / "config", ec);
  fs::rename(tree / "lib", out / "lib", ec);
  if (ec) return Fail(Errc::kInternal, "move the modules: " + ec.message());
  json meta = {{"format", 1}, {"package", package}, {"release", release}};
  KILN_TRY(WriteWholeFile(out / "kernel.json", meta.dump() + "\n", 0644));
  UniqueFd dirfd(open(out.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd || syncfs(dirfd.get()) < 0) return FailErrno("syncfs " + out.string());
  KILN_LOG(Info, "guest kernel unpacked", {"package", package}, {"release", release},
           {"download_ms", download_ms}, {"dpkg_deb_ms", unpack_ms}, {"vmlinux_ms", vmlinux_ms},
           {"total_ms", ms_since(t0)});
  return {};
}

Result<GuestKernel> Fetch(const fs::path& cache, const std::string& package,
                          const GuestKernelOptions& options) {
  RemoveStaleBuilds(cache);
  std::string templ = (cache / kBuildPrefix).string() + "XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) return FailErrno("mkdtemp " + templ);
  fs::path build = templ;
  auto cleanup = [&build] {
    std::error_code ec;
    fs::remove_all(build, ec);
  };
  Status unpacked = Unpack(build, package, options);
  if (!unpacked) {
    cleanup();
    return Unexpected(std::move(unpacked).error());
  }
  fs::path final = cache / kKernelsDir / package;
  std::error_code ec;
  fs::create_directories(final.parent_path(), ec);
  fs::remove_all(final, ec);  // an incomplete entry (no kernel.json): we hold the lock
  if (rename((build / "out").c_str(), final.c_str()) < 0) {
    int err = errno;
    cleanup();
    return FailErrno("rename into " + final.string(), err);
  }
  cleanup();
  return FindCachedKernel(cache, package);
}

}  // namespace

bool IsKernelPackageName(std::string_view name) {
  if (!name.starts_with("linux-image-") || name.size() == 12 || name.size() > 100) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '+' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::string> ParseKernelDependency(std::string_view text) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.starts_with("|")) line.erase(0, 1);
    if (!line.starts_with("Depends:")) continue;
    std::string name = Trim(std::string_view(line).substr(8));
    if (IsKernelPackageName(name)) return name;
  }
  return Fail(Errc::kNotFound, "no dependency on a linux-image-* package");
}

Result<GuestKernel> FindCachedKernel(const fs::path& cache_dir, std::string_view package) {
  if (!IsKernelPackageName(package)) {
    return Fail(Errc::kInvalidArgument,
                "not a kernel package name: " + log::Sanitize(package, 100));
  }
  GuestKernel k;
  k.dir = cache_dir / kKernelsDir / std::string(package);
  auto meta_text = ReadWholeFile(k.dir / "kernel.json", 1 << 16);
  if (!meta_text) return Fail(Errc::kNotFound, "kernel " + std::string(package) + " is not cached");
  json meta = json::parse(*meta_text, nullptr, false);
  if (!meta.is_object() || !meta.value("release", json()).is_string() ||
      meta.value("package", json()) != package) {
    return Fail(Errc::kNotFound, k.dir.string() + "/kernel.json is malformed");
  }
  k.package = std::string(package);
  k.release = meta["release"].get<std::string>();
  k.vmlinux = k.dir / "vmlinux";
  k.modules_dir = k.dir / "lib/modules" / k.release;
  std::error_code ec;
  if (k.release.find('/') != std::string::npos || !fs::is_regular_file(k.vmlinux, ec) ||
      !fs::is_directory(k.modules_dir, ec)) {
    return Fail(Errc::kNotFound, "cached kernel " + k.dir.string() + " is incomplete");
  }
  return k;
}

Result<GuestKernel> NewestCachedKernel(const fs::path& cache_dir) {
  std::error_code ec;
  Result<GuestKernel> best = Fail(Errc::kNotFound, "no kernel in " + cache_dir.string());
  fs::file_time_type best_time;
  for (const auto& entry : fs::directory_iterator(cache_dir / kKernelsDir, ec)) {
    auto kernel = FindCachedKernel(cache_dir, entry.path().filename().string());
    if (!kernel) continue;
    fs::file_time_type t = fs::last_write_time(kernel->dir / "kernel.json", ec);
    if (ec) continue;
    if (!best || t > best_time) {
      best = std::move(kernel);
      best_time = t;
    }
  }
  return best;
}

Result<GuestKernel> EnsureGuestKernel(const GuestKernelOptions& options) {
  auto resolved = ResolvePackage(options);
  if (!resolved) {
    // Offline, or apt knows no kernel: the newest cached one still boots guests.
    if (auto cached = NewestCachedKernel(options.cache_dir)) {
      KILN_LOG(Warn, "cannot resolve the guest kernel package; using the cached one",
               {"error", resolved.error().message()}, {"package", cached->package});
      return cached;
    }
    return Unexpected(std::move(resolved).error());
  }
  std::string package = std::move(*resolved);
  if (!IsKernelPackageName(package)) {
    return Fail(Errc::kInvalidArgument,
                "not a kernel package name: " + log::Sanitize(package, 100));
  }
  if (auto cached = FindCachedKernel(options.cache_dir, package)) return cached;
  std::error_code ec;
  fs::create_directories(options.cache_dir, ec);
  if (ec)
    return Fail(Errc::kInternal, "create " + options.cache_dir.string() + ": " + ec.message());
  KILN_ASSIGN_OR_RETURN(UniqueFd lock, LockCache(options.cache_dir));
  if (auto cached = FindCachedKernel(options.cache_dir, package)) return cached;  // we waited
  KILN_LOG(Info, "fetching the guest kernel", {"package", package});
  auto kernel = Fetch(options.cache_dir, package, options);
  if (!kernel) return Unexpected(std::move(kernel).error().Wrap("guest kernel " + package));
  return kernel;
}

}  // namespace kiln::kilnd::vm
