#pragma once

// Installs Debian packages into a template rootfs with the rootfs's own apt-get, run chrooted
// in a private mount namespace (proc, the host's /dev and /etc/resolv.conf mounted for it;
// nothing stays mounted afterwards).

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "kilnd/template/build_progress.h"
#include "sys/spawn.h"

namespace kiln::kilnd::tmpl {

struct AptInstallArgs {
  std::filesystem::path rootfs;       // a complete Debian tree with apt and sources.list
  std::vector<std::string> packages;  // installed with --no-install-recommends
  std::chrono::seconds timeout{1800};  // per apt-get run
  std::filesystem::path resolv_conf = "/etc/resolv.conf";  // the host's, for the downloads
};

// The two runs, `apt-get update` and `apt-get install -y --no-install-recommends PKGS`, as
// jailed spawn specs (exposed for tests).
std::vector<sys::SpawnSpec> AptInstallSpecs(const AptInstallArgs& args);

// Runs both. `on_started` gets each run's pid, `on_line` its output lines. Failures quote
// apt-get's last lines (e.g. "E: Unable to locate package x").
Status RunAptInstall(const AptInstallArgs& args, const std::function<void(pid_t)>& on_started,
                     const std::function<void(std::string_view)>& on_line);

// Maps apt-get's output ("Get:12 http://...", "Unpacking x", "Setting up x") to progress in
// [from, to], scaled by the expected number of packages. Not thread-safe.
class AptProgress {
 public:
  AptProgress(int expected_debs, int from_percent, int to_percent);
  std::optional<BuildProgress> Feed(std::string_view line);

 private:
  int expected_;
  int from_;
  int to_;
  int got_ = 0;
  int unpacked_ = 0;
  int set_up_ = 0;
  int percent_;
};

}  // namespace kiln::kilnd::tmpl
