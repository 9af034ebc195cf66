#include "envd/process/exec_plan.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>

namespace kiln::envd {
namespace {

class ExecPlanTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-exec-plan-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    home_ = tmpl;
    std::filesystem::create_directories(home_ + "/sub");
    std::ofstream(home_ + "/file") << "x";
    user_.name = "alice";
    user_.uid = 1234;
    user_.gid = 1235;
    user_.groups = {1235, 27};
    user_.home = home_;
  }
  void TearDown() override { std::filesystem::remove_all(home_); }

  static wire::ProcessConfig Config(std::string cmd = "/bin/sh") {
    wire::ProcessConfig c;
    c.cmd = std::move(cmd);
    c.args = {"-c", "true"};
    return c;
  }

  static std::vector<std::string> Env(const sys::SpawnSpec& spec) {
    std::vector<std::string> env = spec.env;
    std::sort(env.begin(), env.end());
    return env;
  }

  std::string home_;
  sys::UserInfo user_;
  AgentState state_;
};

TEST_F(ExecPlanTest, BaseEnvironmentIsPathAndTheUser) {
  auto spec = BuildSpawnSpec(Config(), user_, state_);
  ASSERT_TRUE(spec) << spec.error().message();
  EXPECT_EQ(Env(*spec), (std::vector<std::string>{"HOME=" + home_, "LOGNAME=alice",
                                                   std::string("PATH=") + kDefaultPath,
                                                   "USER=alice"}));
}

TEST_F(ExecPlanTest, CallEnvsOverrideGlobalOnesWhichOverrideTheBase) {
  state_.env_vars = {{"G", "global"}, {"ONLY_G", "1"}, {"PATH", "/opt/bin:/bin"}};
  wire::ProcessConfig c = Config();
  c.envs = {{"G", "call"}, {"C", "c"}, {"HOME", "/elsewhere"}};
  auto spec = BuildSpawnSpec(c, user_, state_);
  ASSERT_TRUE(spec) << spec.error().message();
  EXPECT_EQ(Env(*spec), (std::vector<std::string>{"C=c", "G=call", "HOME=/elsewhere",
                                                   "LOGNAME=alice", "ONLY_G=1",
                                                   "PATH=/opt/bin:/bin", "USER=alice"}));
}

TEST_F(ExecPlanTest, CallEnvsDoNotLeakIntoLaterCalls) {
  wire::ProcessConfig with = Config();
  with.envs = {{"SECRET", "1"}};
  ASSERT_TRUE(BuildSpawnSpec(with, user_, state_));
  auto later = BuildSpawnSpec(Config(), user_, state_);
  ASSERT_TRUE(later);
  for (const std::string& e : later->env) EXPECT_FALSE(e.starts_with("SECRET=")) << e;
  EXPECT_TRUE(state_.env_vars.empty());
}

TEST_F(ExecPlanTest, ArgvAndIdentity) {
  wire::ProcessConfig c = Config();
  c.args = {"-l", "-c", "echo hi"};
  auto spec = BuildSpawnSpec(c, user_, state_);
  ASSERT_TRUE(spec);
  EXPECT_EQ(spec->path, "/bin/sh");
  EXPECT_EQ(spec->argv, (std::vector<std::string>{"/bin/sh", "-l", "-c", "echo hi"}));
  EXPECT_EQ(spec->uid, 1234u);
  EXPECT_EQ(spec->gid, 1235u);
  EXPECT_EQ(spec->groups, (std::vector<gid_t>{1235, 27}));
}

TEST_F(ExecPlanTest, CommandIsLookedUpInTheEffectivePath) {
  auto spec = BuildSpawnSpec(Config("sh"), user_, state_);
  ASSERT_TRUE(spec);
  EXPECT_TRUE(spec->path == "/usr/bin/sh" || spec->path == "/bin/sh") << spec->path;
  EXPECT_EQ(spec->argv.front(), "sh");
  state_.env_vars = {{"PATH", home_}};
  auto missing = BuildSpawnSpec(Config("sh"), user_, state_);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Errc::kInvalidArgument);
}

TEST_F(ExecPlanTest, CwdDefaultsToHomeThenToTheDefaultWorkdir) {
  EXPECT_EQ(BuildSpawnSpec(Config(), user_, state_)->cwd, home_);
  state_.default_workdir = home_ + "/sub";
  EXPECT_EQ(BuildSpawnSpec(Config(), user_, state_)->cwd, home_ + "/sub");
}

TEST_F(ExecPlanTest, CwdIsResolvedLikeOtherPaths) {
  wire::ProcessConfig c = Config();
  c.cwd = "sub";
  EXPECT_EQ(BuildSpawnSpec(c, user_, state_)->cwd, home_ + "/sub");
  c.cwd = "~/sub/../sub/.";
  EXPECT_EQ(BuildSpawnSpec(c, user_, state_)->cwd, home_ + "/sub");
  c.cwd = "/tmp";
  EXPECT_EQ(BuildSpawnSpec(c, user_, state_)->cwd, "/tmp");
}

TEST_F(ExecPlanTest, MissingOrNonDirectoryCwdIsInvalidArgument) {
  wire::ProcessConfig c = Config();
  for (const char* cwd : {"/nonexistent/dir", "file", "sub/missing"}) {
    c.cwd = cwd;
    auto spec = BuildSpawnSpec(c, user_, state_);
    ASSERT_FALSE(spec) << cwd;
    EXPECT_EQ(spec.error().code(), Errc::kInvalidArgument) << cwd;
  }
}

TEST_F(ExecPlanTest, BadEnvNamesAndNulBytesAreInvalidArgument) {
  auto expect_invalid = [&](const wire::ProcessConfig& c) {
    auto spec = BuildSpawnSpec(c, user_, state_);
    ASSERT_FALSE(spec);
    EXPECT_EQ(spec.error().code(), Errc::kInvalidArgument) << spec.error().message();
  };
  wire::ProcessConfig c = Config();
  c.envs = {{"", "x"}};
  expect_invalid(c);
  c.envs = {{"A=B", "x"}};
  expect_invalid(c);
  c.envs = {{"A", std::string("x\0y", 3)}};
  expect_invalid(c);
  c = Config();
  c.args.push_back(std::string("a\0b", 3));
  expect_invalid(c);
  c = Config(std::string("/bin/sh\0x", 9));
  expect_invalid(c);
  c = Config();
  c.cwd = std::string("/tmp\0/etc", 9);
  expect_invalid(c);
}

}  // namespace
}  // namespace kiln::envd
