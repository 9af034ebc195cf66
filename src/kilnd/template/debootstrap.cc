#include "kilnd/template/debootstrap.h"

#include <algorithm>

#include "kilnd/template/build_tool.h"
#include "sys/spawn.h"

namespace kiln::kilnd::tmpl {

std::vector<std::string> DebootstrapArgv(const DebootstrapArgs& args) {
  std::vector<std::string> argv = {args.executable, "--variant=" + args.variant};
  if (!args.packages.empty()) {
    std::string include = "--include=";
    for (size_t i = 0; i < args.packages.size(); ++i) {
      if (i > 0) include += ',';
      include += args.packages[i];
    }
    argv.push_back(std::move(include));
  }
  argv.push_back(args.suite);
  argv.push_back(args.target.string());
  argv.push_back(args.mirror);
  return argv;
}

Status RunDebootstrap(const DebootstrapArgs& args, const std::function<void(pid_t)>& on_started,
                      const std::function<void(std::string_view)>& on_line) {
  KILN_ASSIGN_OR_RETURN(std::string exe, sys::FindExecutable(args.executable, ""));
  sys::SpawnSpec spec;
  spec.path = exe;
  spec.argv = DebootstrapArgv(args);
  spec.env = BuildToolEnv();
  spec.cwd = "/";
  return RunBuildTool(std::move(spec), "debootstrap", args.timeout, on_started, on_line);
}

DebootstrapProgress::DebootstrapProgress(int expected_debs, int from_percent, int to_percent)
    : expected_(std::max(expected_debs, 1)),
      from_(from_percent),
      to_(to_percent),
      percent_(from_percent) {}

int DebootstrapProgress::Scaled(int count, int expected, int from, int to) const {
  expected = std::max(expected, 1);
  return from + (to - from) * std::min(count, expected) / expected;
}

void DebootstrapProgress::Advance(const char* phase, int permille) {
  phase_ = phase;
  percent_ = std::max(percent_, from_ + (to_ - from_) * std::clamp(permille, 0, 1000) / 1000);
}

std::optional<BuildProgress> DebootstrapProgress::Feed(std::string_view line) {
  if (line.starts_with("W: ") || line.starts_with("E: ")) {
    return BuildProgress{phase_, std::string(line), percent_};
  }
  if (!line.starts_with("I: ")) return std::nullopt;
  std::string_view msg = line.substr(3);
  while (!msg.empty() && (msg.back() == ' ' || msg.back() == '\t')) msg.remove_suffix(1);
  auto package_line = [&](std::string_view verb) {
    // "Retrieving libc6 2.36-9" names a package; "Retrieving Packages" an index.
    if (!msg.starts_with(verb)) return false;
    std::string_view rest = msg.substr(verb.size());
    return !rest.empty() && rest != "Packages" && rest != "InRelease" && rest != "Release" &&
           rest != "Release.gpg" && !rest.ends_with("packages...") && rest != "the base system...";
  };
  if (package_line("Retrieving ")) {
    Advance("download", Scaled(++retrieved_, expected_, 50, 450));
  } else if (package_line("Validating ")) {
    Advance("download", Scaled(retrieved_, expected_, 50, 450));
  } else if (msg.starts_with("Retrieving ") || msg.starts_with("Validating ") ||
             msg.contains("Release signature")) {
    Advance("download", 20);
  } else if (msg.starts_with("Resolving dependencies") || msg.starts_with("Found additional") ||
             msg.starts_with("Checking component")) {
    Advance("download", 45);
  } else if (msg.starts_with("Chosen extractor")) {
    Advance("extract", 450);
  } else if (package_line("Extracting ")) {
    Advance("extract", Scaled(++extracted_, expected_ * 6 / 10, 450, 550));
  } else if (msg.starts_with("Installing core packages")) {
    Advance("unpack", 550);
  } else if (package_line("Unpacking ")) {
    Advance("unpack", Scaled(++unpacked_, expected_, 560, 700));
  } else if (msg.starts_with("Unpacking ")) {
    Advance("unpack", 560);
  } else if (package_line("Configuring ")) {
    Advance("configure", Scaled(++configured_, expected_, 700, 990));
  } else if (msg.starts_with("Configuring ")) {
    Advance("configure", 700);
  } else if (msg.starts_with("Base system installed successfully")) {
    Advance("configure", 1000);
  }
  return BuildProgress{phase_, std::string(msg), percent_};
}

}  // namespace kiln::kilnd::tmpl
