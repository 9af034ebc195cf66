#include "envd/sudo/sudo_env.h"

#include <algorithm>
#include <map>

namespace kiln::envd::sudo {
namespace {

constexpr std::string_view kKept[] = {
    "COLORS", "DISPLAY", "HOSTNAME",   "KRB5CCNAME",     "LS_COLORS",
    "PS1",    "PS2",     "XAUTHORITY", "XAUTHORIZATION", "XDG_CURRENT_DESKTOP",
};
constexpr std::string_view kKeptIfSafe[] = {
    "COLORTERM", "LANG", "LANGUAGE", "LINGUAS", "TERM", "TZ",
};

// sudo's env_check: values that could make a program read an arbitrary file are dropped.
bool SafeValue(std::string_view name, std::string_view value) {
  if (value.find('%') != std::string_view::npos) return false;
  if (name == "TZ") return value.find("..") == std::string_view::npos;
  return value.find('/') == std::string_view::npos;
}

bool KeptByDefault(std::string_view name, std::string_view value) {
  if (std::ranges::find(kKept, name) != std::end(kKept)) return true;
  bool checked =
      name.starts_with("LC_") || std::ranges::find(kKeptIfSafe, name) != std::end(kKeptIfSafe);
  return checked && SafeValue(name, value);
}

// Cuts SUDO_COMMAND like sudo does, so a huge command line does not double the env size.
std::string Truncated(std::string s, size_t max) {
  if (s.size() > max) s.resize(max);
  return s;
}

}  // namespace

std::vector<std::string> FilterInvokerEnv(const std::vector<std::string>& env, bool preserve_all,
                                          const std::vector<std::string>& preserve_names) {
  std::vector<std::string> out;
  for (const std::string& entry : env) {
    size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    std::string_view name(entry.data(), eq);
    std::string_view value = std::string_view(entry).substr(eq + 1);
    if (preserve_all || KeptByDefault(name, value) ||
        std::ranges::find(preserve_names, name) != preserve_names.end()) {
      out.push_back(entry);
    }
  }
  return out;
}

std::vector<std::string> BuildCommandEnv(const CommandEnvInputs& in, const sys::UserInfo& target) {
  std::map<std::string, std::string> env;
  auto put_entries = [&env](const std::vector<std::string>& entries) {
    for (const std::string& e : entries) {
      size_t eq = e.find('=');
      if (eq == std::string::npos || eq == 0) continue;
      env[e.substr(0, eq)] = e.substr(eq + 1);
    }
  };
  put_entries(in.login ? FilterInvokerEnv(in.invoker_env, false, {}) : in.invoker_env);
  const bool keep_invoker_home = in.preserve_env && !in.login && !in.set_home;
  env["PATH"] = kSecurePath;
  if (!keep_invoker_home || !env.contains("HOME")) env["HOME"] = target.home;
  if (!in.preserve_env || in.login || !env.contains("SHELL")) {
    env["SHELL"] = target.shell.empty() ? "/bin/sh" : target.shell;
  }
  env["MAIL"] = "/var/mail/" + target.name;
  env["USER"] = target.name;
  env["LOGNAME"] = target.name;
  env["SUDO_USER"] = in.invoker_name;
  env["SUDO_UID"] = std::to_string(in.invoker_uid);
  env["SUDO_GID"] = std::to_string(in.invoker_gid);
  env["SUDO_COMMAND"] = Truncated(in.command_line, 4096);
  put_entries(in.assignments);
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

}  // namespace kiln::envd::sudo
