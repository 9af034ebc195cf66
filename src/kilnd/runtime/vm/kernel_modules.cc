#include "kilnd/runtime/vm/kernel_modules.h"

#include <elf.h>

#include <algorithm>
#include <cstring>

#include "kilnd/runtime/vm/file_io.h"
#include "kilnd/runtime/vm/vmlinux.h"

namespace kiln::kilnd::vm {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSigMagic = "~Module signature appended~\n";
constexpr size_t kMaxModule = 64u << 20;

template <typename T>
bool ReadAt(std::string_view data, size_t offset, T& out) {
  if (offset > data.size() || data.size() - offset < sizeof(T)) return false;
  std::memcpy(&out, data.data() + offset, sizeof(T));
  return true;
}

std::vector<std::string> SplitCommas(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    size_t c = s.find(',');
    std::string_view item = s.substr(0, c);
    if (!item.empty()) out.push_back(NormalizeModuleName(item));
    if (c == std::string_view::npos) break;
    s.remove_prefix(c + 1);
  }
  return out;
}

// "kernel/fs/ext4/ext4.ko" -> "ext4"; empty for files that are not modules.
std::string StemOf(const fs::path& path) {
  std::string file = path.filename().string();
  for (std::string_view suffix : {".ko", ".ko.xz"}) {
    if (file.size() > suffix.size() && file.ends_with(suffix)) {
      return NormalizeModuleName(std::string_view(file).substr(0, file.size() - suffix.size()));
    }
  }
  return {};
}

Result<std::string> LoadModuleFile(const fs::path& path) {
  KILN_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(path, kMaxModule));
  if (path.extension() == ".xz") {
    auto raw = XzDecompress(data, kMaxModule);
    if (!raw) return Unexpected(std::move(raw).error().Wrap(path.string()));
    data = std::move(*raw);
  }
  return data;
}

}  // namespace

std::string NormalizeModuleName(std::string_view name) {
  std::string out(name);
  std::replace(out.begin(), out.end(), '-', '_');
  return out;
}

std::string_view StripModuleSignature(std::string_view ko) {
  // struct module_signature (12 bytes, sig_len big-endian at the end) precedes the magic.
  if (!ko.ends_with(kSigMagic) || ko.size() < kSigMagic.size() + 12) return ko;
  size_t info_at = ko.size() - kSigMagic.size() - 12;
  const auto* p = reinterpret_cast<const unsigned char*>(ko.data() + info_at + 8);
  size_t sig_len = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | p[3];
  if (sig_len > info_at) return ko;
  return ko.substr(0, info_at - sig_len);
}

Result<ModInfo> ParseModInfo(std::string_view ko) {
  Elf64_Ehdr eh;
  if (!ReadAt(ko, 0, eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_shentsize != sizeof(Elf64_Shdr)) {
    return Fail(Errc::kInvalidArgument, "not an ELF64 module");
  }
  Elf64_Shdr strtab;
  if (!ReadAt(ko, eh.e_shoff + size_t{eh.e_shstrndx} * sizeof(Elf64_Shdr), strtab) ||
      strtab.sh_offset > ko.size() || ko.size() - strtab.sh_offset < strtab.sh_size) {
    return Fail(Errc::kInvalidArgument, "bad ELF section name table");
  }
  std::string_view names = ko.substr(strtab.sh_offset, strtab.sh_size);
  for (uint16_t i = 0; i < eh.e_shnum; ++i) {
    Elf64_Shdr sh;
    if (!ReadAt(ko, eh.e_shoff + size_t{i} * sizeof(Elf64_Shdr), sh)) break;
    if (sh.sh_name >= names.size()) continue;
    std::string_view name = names.substr(sh.sh_name);
    name = name.substr(0, name.find('\0'));
    if (name != ".modinfo") continue;
    if (sh.sh_offset > ko.size() || ko.size() - sh.sh_offset < sh.sh_size) break;
    std::string_view info = ko.substr(sh.sh_offset, sh.sh_size);
    ModInfo mi;
    while (!info.empty()) {
      size_t end = info.find('\0');
      std::string_view kv = info.substr(0, end);
      if (kv.starts_with("name=")) mi.name = NormalizeModuleName(kv.substr(5));
      if (kv.starts_with("depends=")) mi.depends = SplitCommas(kv.substr(8));
      if (end == std::string_view::npos) break;
      info.remove_prefix(end + 1);
    }
    if (mi.name.empty()) return Fail(Errc::kInvalidArgument, "module has no name in .modinfo");
    return mi;
  }
  return Fail(Errc::kInvalidArgument, "module has no .modinfo section");
}

Result<ModuleTree> ModuleTree::Scan(const fs::path& modules_dir) {
  ModuleTree tree;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(modules_dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    std::string stem = StemOf(it->path());
    if (!stem.empty()) tree.files_.emplace(stem, it->path());
  }
  if (ec) return Fail(Errc::kInternal, "scan " + modules_dir.string() + ": " + ec.message());
  if (auto builtin = ReadWholeFile(modules_dir / "modules.builtin", 16u << 20)) {
    std::string_view text = *builtin;
    while (!text.empty()) {
      size_t nl = text.find('\n');
      std::string stem = StemOf(fs::path(std::string(text.substr(0, nl))));
      if (!stem.empty()) tree.builtin_.push_back(stem);
      if (nl == std::string_view::npos) break;
      text.remove_prefix(nl + 1);
    }
    std::sort(tree.builtin_.begin(), tree.builtin_.end());
  }
  if (tree.files_.empty()) return Fail(Errc::kNotFound, "no modules in " + modules_dir.string());
  return tree;
}

Status ModuleTree::Visit(const std::string& name, std::vector<std::string>& path,
                         std::vector<Module>& out) const {
  for (const Module& m : out) {
    if (m.name == name) return {};
  }
  if (std::binary_search(builtin_.begin(), builtin_.end(), name)) return {};
  if (std::find(path.begin(), path.end(), name) != path.end()) {
    return Fail(Errc::kInvalidArgument, "module dependency cycle through " + name);
  }
  auto file = files_.find(name);
  if (file == files_.end()) return Fail(Errc::kNotFound, "no kernel module " + name);
  KILN_ASSIGN_OR_RETURN(std::string data, LoadModuleFile(file->second));
  auto info = ParseModInfo(data);
  if (!info) return Unexpected(std::move(info).error().Wrap(file->second.string()));
  path.push_back(name);
  for (const std::string& dep : info->depends) {
    KILN_TRY(Visit(dep, path, out));
  }
  path.pop_back();
  std::string stripped(StripModuleSignature(data));
  out.push_back(Module{name, file->second, std::move(stripped)});
  return {};
}

Result<std::vector<Module>> ModuleTree::Closure(const std::vector<std::string>& roots) const {
  std::vector<Module> out;
  std::vector<std::string> path;
  for (const std::string& root : roots) {
    KILN_TRY(Visit(NormalizeModuleName(root), path, out));
  }
  return out;
}

}  // namespace kiln::kilnd::vm
