#include "envd/sudo/sudo_policy.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "envd/sudo/sudo_plan.h"

namespace kiln::envd::sudo {
namespace {

namespace fs = std::filesystem;

// A root directory with account files shaped like the base template's.
class SudoPolicyTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-sudo-policy-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ / "etc");
    Write("etc/passwd",
          "root:x:0:0:root:/root:/bin/bash\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
          "user:x:1000:1000::/home/user:/bin/bash\n"
          "bob:x:1001:1001::/home/bob:/bin/sh\n"
          "carol:x:1002:1002::/home/carol:/bin/sh\n");
    Write("etc/group",
          "root:x:0:\n"
          "sudo:x:27:user,carol\n"
          "users:x:100:bob\n"
          "nogroup:x:65534:\n"
          "user:x:1000:\n"
          "bob:x:1001:\n"
          "carol:x:1002:\n");
  }
  void TearDown() override {
    if (!root_.empty()) fs::remove_all(root_);
  }
  void Write(const std::string& rel, const std::string& text) {
    std::ofstream(root_ / rel) << text;
  }

  fs::path root_;
};

TEST_F(SudoPolicyTest, RootAndGroupSudoMayOthersMayNot) {
  SudoPolicy policy(root_.string());
  auto root = policy.Authorize(0);
  ASSERT_TRUE(root) << root.error().message();
  EXPECT_EQ(root->name, "root");
  auto user = policy.Authorize(1000);
  ASSERT_TRUE(user) << user.error().message();
  EXPECT_EQ(user->name, "user");
  EXPECT_TRUE(policy.Authorize(1002));
  auto bob = policy.Authorize(1001);
  ASSERT_FALSE(bob);
  EXPECT_EQ(bob.error().code(), Errc::kPermissionDenied);
  EXPECT_EQ(bob.error().message(), "bob is not in the sudoers file.");
  auto nobody = policy.Authorize(65534);
  ASSERT_FALSE(nobody);
  EXPECT_EQ(nobody.error().message(), "nobody is not in the sudoers file.");
}

TEST_F(SudoPolicyTest, UnknownUidIsRefused) {
  SudoPolicy policy(root_.string());
  auto r = policy.Authorize(4242);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "you do not exist in the passwd database");
}

TEST_F(SudoPolicyTest, MembershipIsReadOnEveryCall) {
  SudoPolicy policy(root_.string());
  EXPECT_FALSE(policy.Authorize(1001));
  Write("etc/group", "sudo:x:27:user,bob\nbob:x:1001:\n");
  EXPECT_TRUE(policy.Authorize(1001));
  Write("etc/group", "sudo:x:27:\nbob:x:1001:\n");
  EXPECT_FALSE(policy.Authorize(1000));
}

TEST_F(SudoPolicyTest, PrimaryGroupSudoCounts) {
  Write("etc/passwd", "dave:x:1003:27::/home/dave:/bin/sh\n");
  EXPECT_TRUE(SudoPolicy(root_.string()).Authorize(1003));
}

TEST_F(SudoPolicyTest, RootWithoutPasswdEntryIsStillRoot) {
  Write("etc/passwd", "");
  auto r = SudoPolicy(root_.string()).Authorize(0);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->home, "/root");
}

TEST_F(SudoPolicyTest, TargetDefaultsToRoot) {
  SudoPolicy policy(root_.string());
  auto invoker = policy.Authorize(1000);
  ASSERT_TRUE(invoker);
  auto t = policy.ResolveTarget(std::nullopt, std::nullopt, *invoker);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->uid, 0u);
  EXPECT_EQ(t->home, "/root");
}

TEST_F(SudoPolicyTest, TargetByNameOrNumber) {
  SudoPolicy policy(root_.string());
  auto invoker = *policy.Authorize(1000);
  auto t = policy.ResolveTarget("nobody", std::nullopt, invoker);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->uid, 65534u);
  t = policy.ResolveTarget("#1001", std::nullopt, invoker);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->name, "bob");
  EXPECT_EQ(t->groups, (std::vector<gid_t>{1001, 100}));
  auto missing = policy.ResolveTarget("mallory", std::nullopt, invoker);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message(), "unknown user mallory");
  EXPECT_FALSE(policy.ResolveTarget("#777", std::nullopt, invoker));
}

TEST_F(SudoPolicyTest, GroupOptionSetsThePrimaryGroup) {
  SudoPolicy policy(root_.string());
  auto invoker = *policy.Authorize(1000);
  // -g alone: the invoking user with another primary group.
  auto t = policy.ResolveTarget(std::nullopt, "users", invoker);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->uid, 1000u);
  EXPECT_EQ(t->gid, 100u);
  EXPECT_NE(std::ranges::find(t->groups, gid_t{100}), t->groups.end());
  t = policy.ResolveTarget("root", "#27", invoker);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->uid, 0u);
  EXPECT_EQ(t->gid, 27u);
  auto bad = policy.ResolveTarget(std::nullopt, "wheel", invoker);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "unknown group wheel");
  EXPECT_FALSE(policy.ResolveTarget(std::nullopt, "#4242", invoker));
}

// --- the command plan ---

class SudoPlanTest : public SudoPolicyTest {
 protected:
  Invoker User() { return Invoker{*SudoPolicy(root_.string()).Authorize(1000), 1000}; }
  sys::UserInfo Target(const char* name) {
    return *SudoPolicy(root_.string()).ResolveTarget(name, std::nullopt, User().user);
  }
};

TEST_F(SudoPlanTest, PlainCommandResolvedInSecurePath) {
  SudoRequest req;
  req.argv = {"sh", "-c", "exit 3"};
  req.cwd = "/tmp";
  auto cmd = PlanSudoCommand(req, User(), Target("root"));
  ASSERT_TRUE(cmd) << cmd.error().message();
  EXPECT_TRUE(cmd->spawn.path == "/usr/bin/sh" || cmd->spawn.path == "/bin/sh") << cmd->spawn.path;
  EXPECT_EQ(cmd->spawn.argv, req.argv);
  EXPECT_EQ(cmd->spawn.cwd, "/tmp");
  EXPECT_EQ(cmd->fallback_cwds, (std::vector<std::string>{"/root", "/"}));
  EXPECT_EQ(cmd->spawn.uid, 0u);
  auto has = [&](const std::string& entry) {
    return std::ranges::find(cmd->spawn.env, entry) != cmd->spawn.env.end();
  };
  EXPECT_TRUE(has("SUDO_COMMAND=" + cmd->spawn.path + " -c exit 3"));
  EXPECT_TRUE(has("SUDO_USER=user"));
}

TEST_F(SudoPlanTest, MissingCommandIsCommandNotFound) {
  SudoRequest req;
  req.argv = {"no-such-command-kiln"};
  auto cmd = PlanSudoCommand(req, User(), Target("root"));
  ASSERT_FALSE(cmd);
  EXPECT_EQ(cmd.error().message(), "no-such-command-kiln: command not found");
}

TEST_F(SudoPlanTest, LoginRunsTheTargetsShellAsLoginShellInItsHome) {
  SudoRequest req;
  req.login = true;
  req.argv = {"echo", "a b", "$HOME"};
  req.cwd = "/tmp";
  auto cmd = PlanSudoCommand(req, User(), Target("bob"));
  ASSERT_TRUE(cmd) << cmd.error().message();
  EXPECT_EQ(cmd->spawn.path, "/bin/sh");
  EXPECT_EQ(cmd->spawn.argv, (std::vector<std::string>{"-sh", "-c", "echo a\\ b $HOME"}));
  EXPECT_EQ(cmd->spawn.cwd, "/home/bob");
  EXPECT_EQ(cmd->spawn.uid, 1001u);
  EXPECT_EQ(cmd->spawn.groups, (std::vector<gid_t>{1001, 100}));
}

TEST_F(SudoPlanTest, ShellUsesTheInvokingShell) {
  SudoRequest req;
  req.shell = true;
  req.invoker_shell = "/bin/dash";
  auto cmd = PlanSudoCommand(req, User(), Target("root"));
  ASSERT_TRUE(cmd);
  EXPECT_EQ(cmd->spawn.path, "/bin/dash");
  EXPECT_EQ(cmd->spawn.argv, (std::vector<std::string>{"/bin/dash"}));
  EXPECT_EQ(cmd->spawn.cwd, "/root");  // no cwd sent: the target's home
  req.invoker_shell.clear();
  EXPECT_EQ(PlanSudoCommand(req, User(), Target("root"))->spawn.path, "/bin/bash");
}

TEST_F(SudoPlanTest, ShellEscaping) {
  EXPECT_EQ(ShellEscapeCommand({"ls", "-l", "my file", "$X", "a'b\"c;d"}),
            "ls -l my\\ file $X a\\'b\\\"c\\;d");
}

TEST_F(SudoPlanTest, ListOutput) {
  SudoRequest req;
  req.list = true;
  auto text = ListOutput(req, User().user, "sandbox");
  ASSERT_TRUE(text);
  EXPECT_NE(text->find("User user may run the following commands on sandbox:\n"
                       "    (ALL : ALL) NOPASSWD: ALL\n"),
            std::string::npos);
  req.argv = {"sh", "-c", "x"};
  text = ListOutput(req, User().user, "sandbox");
  ASSERT_TRUE(text);
  EXPECT_TRUE(text->ends_with("sh -c x\n"));
  req.argv = {"no-such-command-kiln"};
  EXPECT_FALSE(ListOutput(req, User().user, "sandbox"));
}

}  // namespace
}  // namespace kiln::envd::sudo
