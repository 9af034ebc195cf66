#include "envd/sudo/sudo_env.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace kiln::envd::sudo {
namespace {

using Env = std::vector<std::string>;

const Env kInvoker = {
    "PATH=/home/user/bin:/usr/bin",
    "HOME=/home/user",
    "SHELL=/bin/bash",
    "USER=user",
    "TERM=xterm-256color",
    "LANG=C.UTF-8",
    "LC_ALL=C",
    "DISPLAY=:0",
    "SECRET=hunter2",
    "LD_PRELOAD=/x.so",
    "TZ=Europe/Paris",
    "LANGUAGE=../x",
    "LC_CTYPE=/etc/passwd",
    "COLORTERM=%s",
    "NOEQUALS",
    "=bad",
};

sys::UserInfo Root() {
  sys::UserInfo u;
  u.name = "root";
  u.home = "/root";
  u.shell = "/bin/bash";
  return u;
}

CommandEnvInputs Inputs(Env env) {
  CommandEnvInputs in;
  in.invoker_env = std::move(env);
  in.invoker_name = "user";
  in.invoker_uid = 1000;
  in.invoker_gid = 1000;
  in.command_line = "/usr/bin/id -u";
  return in;
}

std::string Get(const Env& env, std::string_view name) {
  std::string prefix = std::string(name) + "=";
  for (const std::string& e : env) {
    if (e.starts_with(prefix)) return e.substr(prefix.size());
  }
  return "<unset>";
}

TEST(SudoEnvTest, DefaultFilterKeepsOnlyHarmlessVariables) {
  Env kept = FilterInvokerEnv(kInvoker, false, {});
  EXPECT_EQ(kept, (Env{"TERM=xterm-256color", "LANG=C.UTF-8", "LC_ALL=C", "DISPLAY=:0",
                       "TZ=Europe/Paris"}));
}

TEST(SudoEnvTest, PreserveAllKeepsEverythingWellFormed) {
  Env kept = FilterInvokerEnv(kInvoker, true, {});
  EXPECT_EQ(kept.size(), kInvoker.size() - 2);
  EXPECT_EQ(Get(kept, "SECRET"), "hunter2");
}

TEST(SudoEnvTest, PreserveListAddsNames) {
  Env kept = FilterInvokerEnv(kInvoker, false, {"SECRET"});
  EXPECT_EQ(Get(kept, "SECRET"), "hunter2");
  EXPECT_EQ(Get(kept, "LD_PRELOAD"), "<unset>");
}

TEST(SudoEnvTest, CommandEnvDescribesTargetAndInvoker) {
  Env env = BuildCommandEnv(Inputs(FilterInvokerEnv(kInvoker, false, {})), Root());
  EXPECT_EQ(Get(env, "PATH"), kSecurePath);
  EXPECT_EQ(Get(env, "HOME"), "/root");
  EXPECT_EQ(Get(env, "USER"), "root");
  EXPECT_EQ(Get(env, "LOGNAME"), "root");
  EXPECT_EQ(Get(env, "SHELL"), "/bin/bash");
  EXPECT_EQ(Get(env, "MAIL"), "/var/mail/root");
  EXPECT_EQ(Get(env, "SUDO_USER"), "user");
  EXPECT_EQ(Get(env, "SUDO_UID"), "1000");
  EXPECT_EQ(Get(env, "SUDO_GID"), "1000");
  EXPECT_EQ(Get(env, "SUDO_COMMAND"), "/usr/bin/id -u");
  EXPECT_EQ(Get(env, "TERM"), "xterm-256color");
  EXPECT_EQ(Get(env, "SECRET"), "<unset>");
  EXPECT_TRUE(std::ranges::is_sorted(env));
}

TEST(SudoEnvTest, PreserveEnvKeepsHomeAndShellUnlessSetHome) {
  CommandEnvInputs in = Inputs(FilterInvokerEnv(kInvoker, true, {}));
  in.preserve_env = true;
  Env env = BuildCommandEnv(in, Root());
  EXPECT_EQ(Get(env, "HOME"), "/home/user");
  EXPECT_EQ(Get(env, "SHELL"), "/bin/bash");
  EXPECT_EQ(Get(env, "SECRET"), "hunter2");
  EXPECT_EQ(Get(env, "PATH"), kSecurePath);  // secure_path wins even with -E
  EXPECT_EQ(Get(env, "USER"), "root");
  in.set_home = true;
  EXPECT_EQ(Get(BuildCommandEnv(in, Root()), "HOME"), "/root");
}

TEST(SudoEnvTest, LoginDropsEvenPreservedVariables) {
  CommandEnvInputs in = Inputs(FilterInvokerEnv(kInvoker, true, {}));
  in.preserve_env = true;
  in.login = true;
  Env env = BuildCommandEnv(in, Root());
  EXPECT_EQ(Get(env, "SECRET"), "<unset>");
  EXPECT_EQ(Get(env, "HOME"), "/root");
  EXPECT_EQ(Get(env, "TERM"), "xterm-256color");
}

TEST(SudoEnvTest, AssignmentsOverrideEverything) {
  CommandEnvInputs in = Inputs({});
  in.assignments = {"FOO=bar", "PATH=/opt/bin", "HOME=/tmp", "EMPTY="};
  Env env = BuildCommandEnv(in, Root());
  EXPECT_EQ(Get(env, "FOO"), "bar");
  EXPECT_EQ(Get(env, "PATH"), "/opt/bin");
  EXPECT_EQ(Get(env, "HOME"), "/tmp");
  EXPECT_EQ(Get(env, "EMPTY"), "");
}

TEST(SudoEnvTest, TargetWithoutShellGetsBinSh) {
  sys::UserInfo nobody;
  nobody.name = "nobody";
  nobody.home = "/nonexistent";
  Env env = BuildCommandEnv(Inputs({}), nobody);
  EXPECT_EQ(Get(env, "SHELL"), "/bin/sh");
  EXPECT_EQ(Get(env, "HOME"), "/nonexistent");
}

TEST(SudoEnvTest, HugeCommandLineIsTruncatedInSudoCommand) {
  CommandEnvInputs in = Inputs({});
  in.command_line = std::string(100000, 'x');
  EXPECT_EQ(Get(BuildCommandEnv(in, Root()), "SUDO_COMMAND").size(), 4096u);
}

}  // namespace
}  // namespace kiln::envd::sudo
