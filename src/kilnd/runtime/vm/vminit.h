#pragma once

// kiln-vminit: the guest's first process, /init in the initramfs kiln builds. It loads the
// kernel modules the guest needs (finit_module, in the order the initramfs lists them),
// waits for the root disk, mounts it, frees the initramfs, moves /dev, /proc and /sys into
// the new root, makes it / (MS_MOVE + chroot, as switch_root does), prepares what kiln-envd
// expects of its sandbox (the agent disk, /dev/pts, /dev/shm, /run, hostname, network,
// resolv.conf) and execs the real init with the console as stdin, stdout and stderr.
// Static, no allocation-heavy dependencies: it runs before anything else in the guest.
//
// Configured by the kernel command line:
//   kiln.root=/dev/vda        the root device (default /dev/vda)
//   kiln.rootfstype=ext4      its filesystem (default ext4)
//   kiln.rootflags=ro,...     "ro" mounts read-only; anything else is passed as mount data
//   kiln.wait=10              seconds to wait for the root (and agent) device (default 10)
//   kiln.agent=/dev/vdb       an ext4 disk mounted read-only (nodev, nosuid) at /.kiln in
//                             the new root, which holds kiln-envd and kiln-interp
//   kiln.hostname=sandbox     sethostname
//   kiln.net=10.0.2.2/24,10.0.2.1
//                             eth0's address/prefix and the default gateway (", gw" may be
//                             left out: no default route). Without it eth0 stays down.
//                             IPv6 is disabled on eth0 (the sandbox network is IPv4 only and
//                             kiln's egress policy is written for IPv4); lo keeps ::1.
//   kiln.dns=10.0.2.1[,...]   /etc/resolv.conf with these nameservers (up to 3), written as a
//                             regular file (a symlink there is replaced)
//   -- /sbin/init args...     the real init and its arguments (default /sbin/init)
//
// Always: lo up; devpts (newinstance, ptmxmode=0666, mode=0620, gid=5) on /dev/pts with
// /dev/ptmx -> pts/ptmx; tmpfs on /dev/shm (1777) and /run (0755); /dev/fd, /dev/stdin,
// /dev/stdout, /dev/stderr links (devtmpfs has none of these).

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln::kilnd::vm {

// Where the initramfs keeps the module list: one path per line, relative to /.
inline constexpr char kVmInitModuleList[] = "kiln/modules.list";
inline constexpr char kVmInitNewRoot[] = "newroot";

// kiln.net: addresses in host byte order (10.0.2.2 is 0x0a000202).
struct VmInitNet {
  uint32_t address = 0;
  int prefix = 0;                   // 1..30
  std::optional<uint32_t> gateway;  // in the subnet, not the address itself
};

struct VmInitConfig {
  std::string root_device = "/dev/vda";
  std::string root_fstype = "ext4";
  bool root_readonly = false;
  std::string root_data;  // mount(2) data, e.g. "errors=remount-ro"
  std::chrono::seconds wait{10};
  std::string agent_device;  // empty: no agent disk
  std::string hostname;      // empty: left as the kernel's
  std::optional<VmInitNet> net;
  std::vector<std::string> dns;  // dotted IPv4 nameservers
  std::vector<std::string> init = {"/sbin/init"};
};

// Where the agent disk is mounted in the new root.
inline constexpr char kVmInitAgentDir[] = "/.kiln";
// The guest's network interface kiln.net configures.
inline constexpr char kVmInitNetIf[] = "eth0";

// Parses /proc/cmdline. Unknown parameters are ignored; kInvalidArgument for a kiln.*
// value that makes no sense (relative device, bad number or address, a hostname that is not
// a valid host name, init not absolute).
Result<VmInitConfig> ParseVmInitCmdline(std::string_view cmdline);

// The whole of kiln-vminit. Returns only on failure (the exit code; the kernel then panics,
// and with panic=-1 and QEMU's -no-reboot the VM ends), after printing why on the console.
int VmInitMain();

}  // namespace kiln::kilnd::vm
