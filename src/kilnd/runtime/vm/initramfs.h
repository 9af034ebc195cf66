#pragma once

// The guest's initramfs: kiln-vminit as /init plus the kernel modules the guest needs, in
// load order (kernel_modules.h). Uncompressed: under TCG a gzip initramfs boots ~0.1 s
// slower (measured-qemu.md §1).
//
//   /init                  kiln-vminit (static)
//   /dev/console           the console node the kernel opens for /init
//   /dev /proc /sys /newroot
//   /kiln/modules.list     the modules in finit_module order, one path per line
//   /kiln/modules/NN-name.ko

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"

namespace kiln::kilnd::vm {

// What a guest needs: virtio-mmio (found through ACPI on microvm), block, net, console
// (virtio-serial), rng, ext4 (with crc32c for its checksums: a soft dependency that
// .modinfo does not list as "depends"), overlay.
std::vector<std::string> DefaultGuestModules();

struct InitramfsSpec {
  std::filesystem::path vminit;       // the static kiln-vminit binary
  std::filesystem::path modules_dir;  // GuestKernel::modules_dir
  std::vector<std::string> modules = DefaultGuestModules();
};

struct Initramfs {
  std::string archive;               // cpio newc
  std::vector<std::string> modules;  // the closure, in load order
};

Result<Initramfs> BuildInitramfs(const InitramfsSpec& spec);

}  // namespace kiln::kilnd::vm
