#include "kilnd/cgroup/cgroup.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "kilnd/cgroup/unified_group.h"

namespace kiln::kilnd::cgroup {
namespace {

// Undoes the octal escapes of /proc/self/mountinfo (" " is "\040").
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out += static_cast<char>(v);
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

bool HasOption(std::string_view options, std::string_view opt) {
  size_t pos = 0;
  while (pos <= options.size()) {
    size_t end = options.find(',', pos);
    if (end == std::string_view::npos) end = options.size();
    if (options.substr(pos, end - pos) == opt) return true;
    pos = end + 1;
  }
  return false;
}

}  // namespace

Result<Layout> CgroupBackend::DetectLayout() {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return FailErrno("open /proc/self/mountinfo");
  Layout layout;
  std::string line;
  while (std::getline(in, line)) {
    // id parent maj:min root mountpoint options [optional...] - fstype source superoptions
    std::istringstream fields(line);
    std::string id, parent, devno, root, mountpoint, options, tok;
    fields >> id >> parent >> devno >> root >> mountpoint >> options;
    while (fields >> tok && tok != "-") {
    }
    std::string fstype, source, super;
    fields >> fstype >> source >> super;
    if (root != "/") continue;  // a bind mount of a subtree, not the hierarchy root
    std::filesystem::path mp = Unescape(mountpoint);
    if (fstype == "cgroup2") {
      if (layout.unified.empty()) layout.unified = mp;
    } else if (fstype == "cgroup") {
      auto take = [&](std::string_view controller, std::filesystem::path& slot) {
        if (slot.empty() && HasOption(super, controller)) slot = mp;
      };
      take("memory", layout.v1_memory);
      take("pids", layout.v1_pids);
      take("cpu", layout.v1_cpu);
      take("cpuacct", layout.v1_cpuacct);
    }
  }
  if (layout.unified.empty()) {
    return Fail(Errc::kUnavailable, "no cgroup2 hierarchy mounted (kilnd needs it for freeze "
                                    "and kill; cgroup v1 alone is not supported)");
  }
  if (layout.hybrid() &&
      (layout.v1_pids.empty() || layout.v1_cpu.empty() || layout.v1_cpuacct.empty())) {
    return Fail(Errc::kUnavailable,
                "cgroup v1 memory is mounted but pids, cpu or cpuacct is not");
  }
  return layout;
}

Result<std::unique_ptr<CgroupBackend>> CgroupBackend::ForLayout(const Layout& layout,
                                                                std::string_view parent) {
  KILN_TRY(internal::CheckName(parent, "parent"));
  if (layout.hybrid()) return internal::MakeHybridBackend(layout, std::string(parent));
  return internal::MakeV2Backend(layout, std::string(parent));
}

Result<std::unique_ptr<CgroupBackend>> CgroupBackend::Detect(std::string_view parent) {
  KILN_ASSIGN_OR_RETURN(Layout layout, DetectLayout());
  return ForLayout(layout, parent);
}

}  // namespace kiln::kilnd::cgroup
