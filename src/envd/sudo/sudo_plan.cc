#include "envd/sudo/sudo_plan.h"

#include "envd/sudo/sudo_env.h"

namespace kiln::envd::sudo {
namespace {

bool IsPlain(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '$';
}

std::string Basename(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string ShellOf(const std::string& shell) {
  return shell.empty() || shell.front() != '/' ? "/bin/sh" : shell;
}

// Program and argv of the request, before the environment.
Result<std::pair<std::string, std::vector<std::string>>> ProgramAndArgv(
    const SudoRequest& req, const Invoker& invoker, const sys::UserInfo& target) {
  if (req.login || req.shell) {
    std::string shell =
        req.login ? ShellOf(target.shell)
                  : ShellOf(!req.invoker_shell.empty() ? req.invoker_shell : invoker.user.shell);
    std::vector<std::string> argv = {req.login ? "-" + Basename(shell) : shell};
    if (!req.argv.empty()) {
      argv.push_back("-c");
      argv.push_back(ShellEscapeCommand(req.argv));
    }
    return std::pair{shell, std::move(argv)};
  }
  if (req.argv.empty()) return Fail(Errc::kInvalidArgument, "no command");
  auto path = sys::FindExecutable(req.argv[0], kSecurePath);
  if (!path) return Fail(Errc::kNotFound, req.argv[0] + ": command not found");
  return std::pair{std::move(*path), req.argv};
}

std::string CommandLine(const std::string& path, const std::vector<std::string>& argv) {
  std::string line = path;
  for (size_t i = 1; i < argv.size(); ++i) line.append(" ").append(argv[i]);
  return line;
}

}  // namespace

std::string ShellEscapeCommand(const std::vector<std::string>& argv) {
  std::string out;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (i > 0) out += ' ';
    for (char c : argv[i]) {
      if (!IsPlain(c)) out += '\\';
      out += c;
    }
  }
  return out;
}

Result<SudoCommand> PlanSudoCommand(const SudoRequest& req, const Invoker& invoker,
                                    const sys::UserInfo& target) {
  KILN_ASSIGN_OR_RETURN(auto program, ProgramAndArgv(req, invoker, target));
  SudoCommand cmd;
  sys::SpawnSpec& spawn = cmd.spawn;
  spawn.path = std::move(program.first);
  spawn.argv = std::move(program.second);
  CommandEnvInputs env;
  env.invoker_env = FilterInvokerEnv(req.env, req.preserve_env, req.preserve_names);
  env.assignments = req.assignments;
  env.preserve_env = req.preserve_env;
  env.set_home = req.set_home;
  env.login = req.login;
  env.invoker_name = invoker.user.name;
  env.invoker_uid = invoker.user.uid;
  env.invoker_gid = invoker.gid;
  env.command_line = CommandLine(spawn.path, spawn.argv);
  spawn.env = BuildCommandEnv(env, target);
  const std::string home = target.home.empty() ? "/" : target.home;
  spawn.cwd = req.login || req.cwd.empty() ? home : req.cwd;
  if (spawn.cwd != home) cmd.fallback_cwds.push_back(home);
  if (home != "/") cmd.fallback_cwds.push_back("/");
  spawn.uid = target.uid;
  spawn.gid = target.gid;
  spawn.groups = target.groups;
  return cmd;
}

Result<std::string> ListOutput(const SudoRequest& req, const sys::UserInfo& invoker,
                               std::string_view hostname) {
  std::string host(hostname);
  if (!req.argv.empty()) {
    auto path = sys::FindExecutable(req.argv[0], kSecurePath);
    if (!path) return Fail(Errc::kNotFound, req.argv[0] + ": command not found");
    return CommandLine(*path, req.argv) + "\n";
  }
  std::string escaped_path;
  for (char c : std::string_view(kSecurePath)) {
    if (c == ':') escaped_path += '\\';
    escaped_path += c;
  }
  return "Matching Defaults entries for " + invoker.name + " on " + host + ":\n" +
         "    env_reset, secure_path=" + escaped_path + "\n\n" + "User " + invoker.name +
         " may run the following commands on " + host + ":\n" + "    (ALL : ALL) NOPASSWD: ALL\n";
}

}  // namespace kiln::envd::sudo
