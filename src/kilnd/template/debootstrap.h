#pragma once

// Runs debootstrap as a child process (execve with an explicit argv; no shell) and turns its
// "I: ..." lines into progress.

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

namespace kiln::kilnd::tmpl {

struct DebootstrapArgs {
  std::string executable = "/usr/sbin/debootstrap";
  std::string suite = "bookworm";
  std::string variant = "minbase";
  std::vector<std::string> packages;  // --include
  std::filesystem::path target;       // an existing, empty directory
  std::string mirror;
  // debootstrap is killed (with everything it started) after this long: kTimeout.
  std::chrono::seconds timeout{1800};
};

// The argv: debootstrap --variant=V [--include=a,b] SUITE TARGET MIRROR.
std::vector<std::string> DebootstrapArgv(const DebootstrapArgs& args);

// Runs debootstrap as root in a new process group with a fixed environment (PATH, LC_ALL=C,
// DEBIAN_FRONTEND=noninteractive, proxy variables passed through). `on_started` gets the pid
// once it runs; `on_line` gets each line of its stdout and stderr (no newline). Returns when
// it exited and any process it left in its group was killed. On a non-zero exit the error
// (kInternal) quotes the last lines of output. kNotFound if debootstrap is not installed.
Status RunDebootstrap(const DebootstrapArgs& args, const std::function<void(pid_t)>& on_started,
                      const std::function<void(std::string_view)>& on_line);

// Maps debootstrap's output lines to BuildProgress with a percentage in [from, to]. The counts
// of "Retrieving/Extracting/Unpacking/Configuring <package>" lines are scaled by the expected
// number of packages. Not thread-safe.
class DebootstrapProgress {
 public:
  DebootstrapProgress(int expected_debs, int from_percent, int to_percent);

  // Progress for `line`, or nullopt for lines that say nothing new (dpkg chatter).
  std::optional<BuildProgress> Feed(std::string_view line);

 private:
  // Sets phase_ and percent_ (never lower than before) from a position in 0..1000 of the
  // debootstrap run.
  void Advance(const char* phase, int permille);
  int Scaled(int count, int expected, int from, int to) const;

  int expected_;
  int from_;
  int to_;
  int retrieved_ = 0;
  int extracted_ = 0;
  int unpacked_ = 0;
  int configured_ = 0;
  std::string phase_ = "download";
  int percent_;
};

}  // namespace kiln::kilnd::tmpl
