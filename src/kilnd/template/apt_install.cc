#include "kilnd/template/apt_install.h"

#include <sys/mount.h>

#include <algorithm>

#include "kilnd/template/build_tool.h"

namespace kiln::kilnd::tmpl {

std::vector<sys::SpawnSpec> AptInstallSpecs(const AptInstallArgs& args) {
  sys::SpawnSpec base;
  base.path = "/usr/bin/apt-get";
  base.env = BuildToolEnv();
  base.cwd = "/";
  base.root = args.rootfs.string();
  // SECURITY: the targets are paths in a tree kilnd itself built from Debian packages (no
  // sandbox ever wrote to it), so following them cannot be redirected.
  base.mounts = {
      {"proc", (args.rootfs / "proc").string(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC},
      {"/dev", (args.rootfs / "dev").string(), "", MS_BIND | MS_REC},
      {args.resolv_conf.string(), (args.rootfs / "etc/resolv.conf").string(), "", MS_BIND},
  };
  sys::SpawnSpec update = base;
  update.argv = {"apt-get", "-q", "update"};
  sys::SpawnSpec install = base;
  install.argv = {"apt-get", "-q", "install", "-y", "--no-install-recommends"};
  install.argv.insert(install.argv.end(), args.packages.begin(), args.packages.end());
  return {std::move(update), std::move(install)};
}

Status RunAptInstall(const AptInstallArgs& args, const std::function<void(pid_t)>& on_started,
                     const std::function<void(std::string_view)>& on_line) {
  if (args.packages.empty()) return {};
  std::vector<sys::SpawnSpec> runs = AptInstallSpecs(args);
  KILN_TRY(RunBuildTool(std::move(runs[0]), "apt-get update", args.timeout, on_started, on_line));
  return RunBuildTool(std::move(runs[1]), "apt-get install", args.timeout, on_started, on_line);
}

AptProgress::AptProgress(int expected_debs, int from_percent, int to_percent)
    : expected_(std::max(expected_debs, 1)), from_(from_percent), to_(to_percent),
      percent_(from_percent) {}

std::optional<BuildProgress> AptProgress::Feed(std::string_view line) {
  const char* phase = nullptr;
  // Downloads are the first 40% of the range, unpacking the next 20%, set-up the rest.
  int permille = 0;
  auto scaled = [&](int count, int from, int to) {
    return from + (to - from) * std::min(count, expected_) / expected_;
  };
  if (line.starts_with("Get:")) {
    phase = "download";
    permille = scaled(++got_, 0, 400);
  } else if (line.starts_with("Unpacking ")) {
    phase = "unpack";
    permille = scaled(++unpacked_, 400, 600);
  } else if (line.starts_with("Setting up ")) {
    phase = "configure";
    permille = scaled(++set_up_, 600, 1000);
  } else if (line.starts_with("E: ") || line.starts_with("W: ")) {
    return BuildProgress{"install", std::string(line), percent_};
  } else {
    return std::nullopt;
  }
  percent_ = std::max(percent_, from_ + (to_ - from_) * permille / 1000);
  return BuildProgress{phase, std::string(line.substr(0, 200)), percent_};
}

}  // namespace kiln::kilnd::tmpl
