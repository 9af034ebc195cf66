#include "envd/process/exec_plan.h"

#include <sys/stat.h>

#include <map>

namespace kiln::envd {
namespace {

Status NoNul(const std::string& s, std::string_view what) {
  if (s.find('\0') != std::string::npos) {
    return Fail(Errc::kInvalidArgument, std::string(what) + " contains a NUL byte");
  }
  return Status();
}

Status CheckEnvName(const std::string& name) {
  if (name.empty() || name.find('=') != std::string::npos) {
    return Fail(Errc::kInvalidArgument, "invalid env var name '" + name + "'");
  }
  return NoNul(name, "an env var name");
}

// The layered environment, later layers overriding earlier ones.
Result<std::map<std::string, std::string>> LayerEnv(const wire::ProcessConfig& config,
                                                    const sys::UserInfo& user,
                                                    const AgentState& state) {
  std::map<std::string, std::string> env;
  env["PATH"] = kDefaultPath;
  env["HOME"] = user.home;
  env["USER"] = user.name;
  env["LOGNAME"] = user.name;
  for (const auto& [k, v] : state.env_vars) env[k] = v;
  for (const auto& [k, v] : config.envs) {
    KILN_TRY(CheckEnvName(k));
    env[k] = v;
  }
  // NUL-free names and values, whichever layer they came from: they become C strings.
  for (const auto& [k, v] : env) {
    KILN_TRY(NoNul(k, "an env var name"));
    KILN_TRY(NoNul(v, "env var " + k));
  }
  return env;
}

}  // namespace

Result<sys::SpawnSpec> BuildSpawnSpec(const wire::ProcessConfig& config,
                                      const sys::UserInfo& user, const AgentState& state) {
  sys::SpawnSpec spec;
  KILN_TRY(NoNul(config.cmd, "cmd"));
  for (const std::string& a : config.args) KILN_TRY(NoNul(a, "an argument"));
  std::string requested_cwd = config.cwd.value_or("");
  KILN_TRY(NoNul(requested_cwd, "cwd"));
  // SECURITY: the path is the client's; the child enters it only after dropping to `user`.
  spec.cwd = state.ResolvePath(requested_cwd, user);
  struct stat st;
  if (stat(spec.cwd.c_str(), &st) != 0) {
    return Fail(Errc::kInvalidArgument, "cwd '" + spec.cwd + "' does not exist");
  }
  if (!S_ISDIR(st.st_mode)) {
    return Fail(Errc::kInvalidArgument, "cwd '" + spec.cwd + "' is not a directory");
  }
  KILN_ASSIGN_OR_RETURN(auto env, LayerEnv(config, user, state));
  auto path = sys::FindExecutable(config.cmd, env["PATH"]);
  if (!path) return Fail(Errc::kInvalidArgument, path.error().message());
  spec.path = std::move(*path);
  spec.argv.push_back(config.cmd);
  spec.argv.insert(spec.argv.end(), config.args.begin(), config.args.end());
  for (const auto& [k, v] : env) spec.env.push_back(k + "=" + v);
  spec.uid = user.uid;
  spec.gid = user.gid;
  spec.groups = user.groups;
  return spec;
}

}  // namespace kiln::envd
