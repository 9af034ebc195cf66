#pragma once

// Kernel modules for the guest's initramfs. Debian's kernel package ships no modules.dep
// (depmod makes it on install), so the dependencies come from each module's own .modinfo
// section ("depends=a,b").

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln::kilnd::vm {

struct ModInfo {
  std::string name;                  // "virtio_mmio"
  std::vector<std::string> depends;  // module names, as in "depends=virtio,virtio_ring"
};

// Parses the .modinfo section of an ELF64 module (uncompressed). kInvalidArgument if `ko`
// is not such a file.
Result<ModInfo> ParseModInfo(std::string_view ko);

// `ko` without an appended signature ("~Module signature appended~\n" trailer), if any.
// An unsigned module only taints a kernel without module.sig_enforce, and skipping the RSA
// check saves ~0.14 s of guest time per boot under TCG (measured-qemu.md §1).
std::string_view StripModuleSignature(std::string_view ko);

// "virtio-rng" and "virtio_rng" name the same module.
std::string NormalizeModuleName(std::string_view name);

struct Module {
  std::string name;            // normalised
  std::filesystem::path path;  // the file in the modules tree
  std::string data;            // uncompressed, signature stripped: what finit_module gets
};

// The modules of one kernel release (<root>/lib/modules/<release>), indexed by name.
class ModuleTree {
 public:
  // Walks `modules_dir` for *.ko and *.ko.xz files.
  static Result<ModuleTree> Scan(const std::filesystem::path& modules_dir);

  size_t size() const { return files_.size(); }

  // `roots` and everything they depend on, each once, dependencies first (a valid
  // finit_module order). Names built into the kernel (modules.builtin) are skipped.
  // kNotFound names a module that is neither a file nor built in.
  Result<std::vector<Module>> Closure(const std::vector<std::string>& roots) const;

 private:
  Status Visit(const std::string& name, std::vector<std::string>& path,
               std::vector<Module>& out) const;

  std::map<std::string, std::filesystem::path> files_;
  std::vector<std::string> builtin_;
};

}  // namespace kiln::kilnd::vm
