#include "kilnd/runtime/vm/initramfs.h"

#include <cstdio>

#include "kilnd/runtime/vm/cpio.h"
#include "kilnd/runtime/vm/file_io.h"
#include "kilnd/runtime/vm/kernel_modules.h"
#include "kilnd/runtime/vm/vminit.h"

namespace kiln::kilnd::vm {

std::vector<std::string> DefaultGuestModules() {
  return {"virtio_mmio", "virtio_blk",     "virtio_net", "virtio_console",
          "virtio_rng",  "crc32c_generic", "ext4",       "overlay"};
}

Result<Initramfs> BuildInitramfs(const InitramfsSpec& spec) {
  auto vminit = ReadWholeFile(spec.vminit, 64u << 20);
  if (!vminit) return Unexpected(std::move(vminit).error().Wrap("kiln-vminit"));
  KILN_ASSIGN_OR_RETURN(ModuleTree tree, ModuleTree::Scan(spec.modules_dir));
  KILN_ASSIGN_OR_RETURN(std::vector<Module> modules, tree.Closure(spec.modules));

  CpioWriter cpio;
  for (const char* dir : {"dev", "proc", "sys", kVmInitNewRoot, "kiln", "kiln/modules"}) {
    KILN_TRY(cpio.AddDirectory(dir, 0755));
  }
  KILN_TRY(cpio.AddCharDevice("dev/console", 0600, 5, 1));
  KILN_TRY(cpio.AddFile("init", 0755, *vminit));
  Initramfs out;
  std::string list;
  for (size_t i = 0; i < modules.size(); ++i) {
    char prefix[24];
    std::snprintf(prefix, sizeof prefix, "%02zu-", i);
    std::string path = "kiln/modules/" + std::string(prefix) + modules[i].name + ".ko";
    KILN_TRY(cpio.AddFile(path, 0644, modules[i].data));
    list += path + "\n";
    out.modules.push_back(modules[i].name);
  }
  KILN_TRY(cpio.AddFile(kVmInitModuleList, 0644, list));
  out.archive = cpio.Finish();
  return out;
}

}  // namespace kiln::kilnd::vm
