#pragma once

// The guest kernel of the vm runtime: Debian's own kernel package (the one the
// linux-image-amd64 metapackage currently depends on), fetched with `apt-get download` and
// unpacked into kiln's cache, never installed on the host. Kept there:
//
//   <cache>/.lock                          flock(2): one fetch at a time, across processes
//   <cache>/kernels/<package>/vmlinux      the uncompressed ELF kernel (PVH entry)
//   <cache>/kernels/<package>/config       the kernel's build configuration
//   <cache>/kernels/<package>/lib/modules/<release>/...   its modules, as packaged
//   <cache>/kernels/<package>/kernel.json  {"format":1,"package":...,"release":...}
//   <cache>/.build-kernel-XXXXXX/          a fetch in progress (or the remains of a killed one)

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln::kilnd::vm {

inline constexpr char kDefaultVmCacheDir[] = "/var/cache/kiln/vm";

struct GuestKernel {
  std::string package;                // "linux-image-6.1.0-56-amd64"
  std::string release;                // "6.1.0-56-amd64" (uname -r in the guest)
  std::filesystem::path dir;          // <cache>/kernels/<package>
  std::filesystem::path vmlinux;      // <dir>/vmlinux
  std::filesystem::path modules_dir;  // <dir>/lib/modules/<release>
};

struct GuestKernelOptions {
  std::filesystem::path cache_dir = kDefaultVmCacheDir;
  // The kernel package; empty: the one `metapackage` depends on (apt-cache depends).
  std::string package;
  std::string metapackage = "linux-image-amd64";
  // For each of apt-get download and dpkg-deb.
  std::chrono::seconds tool_timeout{600};
};

// The kernel package named by `apt-cache depends <metapackage>` output: the first
// "Depends: linux-image-..." line. kNotFound if there is none.
Result<std::string> ParseKernelDependency(std::string_view apt_cache_depends_output);

// True for names like linux-image-6.1.0-56-amd64 ([a-z0-9.+-], the linux-image- prefix).
bool IsKernelPackageName(std::string_view name);

// The cached kernel of `package`; kNotFound if it is not in the cache (or incomplete).
Result<GuestKernel> FindCachedKernel(const std::filesystem::path& cache_dir,
                                     std::string_view package);

// The cached kernel whose kernel.json is newest; kNotFound if there is none.
Result<GuestKernel> NewestCachedKernel(const std::filesystem::path& cache_dir);

// Returns the cached kernel, fetching and unpacking it first if needed (seconds; blocking;
// needs root for apt-get). Fetches are serialised across processes by the cache lock; a
// fetch runs in a temporary directory that is renamed into place when complete, so a killed
// fetch leaves nothing half-made behind (the next fetch removes its remains). Errors name
// the failing step (apt-cache, apt-get download, dpkg-deb, the vmlinux extraction). When
// the package cannot be resolved (offline host, empty apt lists) and options.package is
// empty, the newest cached kernel is returned instead.
Result<GuestKernel> EnsureGuestKernel(const GuestKernelOptions& options);

}  // namespace kiln::kilnd::vm
