#pragma once

#include <functional>
#include <string>

namespace kiln::kilnd::tmpl {

// One step of a template build, for a progress display.
struct BuildProgress {
  // Coarse step: "waiting" (for another process's build), "prepare", "download", "extract",
  // "unpack", "configure", "customize", "install", "done".
  std::string phase;
  // What is happening now, e.g. "Retrieving libc6 2.36-9+deb12u10" (debootstrap's words).
  std::string detail;
  // Estimate of the whole build, 0..100; never decreases within a build.
  int percent = 0;
};

using ProgressFn = std::function<void(const BuildProgress&)>;

}  // namespace kiln::kilnd::tmpl
