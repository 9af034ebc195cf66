#pragma once

// kiln-vminit: the guest's first process, /init in the initramfs kiln builds. It loads the
// kernel modules the guest needs (finit_module, in the order the initramfs lists them),
// waits for the root disk, mounts it, frees the initramfs, moves /dev, /proc and /sys into
// the new root, makes it / (MS_MOVE + chroot, as switch_root does) and execs the real init.
// Static, no allocation-heavy dependencies: it runs before anything else in the guest.
//
// Configured by the kernel command line:
//   kiln.root=/dev/vda        the root device (default /dev/vda)
//   kiln.rootfstype=ext4      its filesystem (default ext4)
//   kiln.rootflags=ro,...     "ro" mounts read-only; anything else is passed as mount data
//   kiln.wait=10              seconds to wait for the root device (default 10)
//   -- /sbin/init args...     the real init and its arguments (default /sbin/init)

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln::kilnd::vm {

// Where the initramfs keeps the module list: one path per line, relative to /.
inline constexpr char kVmInitModuleList[] = "kiln/modules.list";
inline constexpr char kVmInitNewRoot[] = "newroot";

struct VmInitConfig {
  std::string root_device = "/dev/vda";
  std::string root_fstype = "ext4";
  bool root_readonly = false;
  std::string root_data;  // mount(2) data, e.g. "errors=remount-ro"
  std::chrono::seconds wait{10};
  std::vector<std::string> init = {"/sbin/init"};
};

// Parses /proc/cmdline. Unknown parameters are ignored; kInvalidArgument for a kiln.*
// value that makes no sense (relative root device, bad number, init not absolute).
Result<VmInitConfig> ParseVmInitCmdline(std::string_view cmdline);

// The whole of kiln-vminit. Returns only on failure (the exit code; the kernel then panics,
// and with panic=-1 and QEMU's -no-reboot the VM ends), after printing why on the console.
int VmInitMain();

}  // namespace kiln::kilnd::vm
