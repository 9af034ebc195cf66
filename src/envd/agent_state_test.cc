#include "envd/agent_state.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>

#include "base/encoding.h"

namespace kiln::envd {
namespace {

sys::UserInfo User() {
  sys::UserInfo u;
  u.name = "user";
  u.uid = 1000;
  u.gid = 1000;
  u.home = "/home/user";
  return u;
}

TEST(NormalizePathTest, CollapsesDotsAndSlashes) {
  EXPECT_EQ(NormalizePath("/"), "/");
  EXPECT_EQ(NormalizePath(""), "/");
  EXPECT_EQ(NormalizePath("/a/b/c"), "/a/b/c");
  EXPECT_EQ(NormalizePath("/a//b///c/"), "/a/b/c");
  EXPECT_EQ(NormalizePath("/a/./b/."), "/a/b");
  EXPECT_EQ(NormalizePath("/a/b/../c"), "/a/c");
  EXPECT_EQ(NormalizePath("/a/b/../../.."), "/");
  EXPECT_EQ(NormalizePath("/../../etc/passwd"), "/etc/passwd");
  EXPECT_EQ(NormalizePath("/a/..b/c.."), "/a/..b/c..");
  EXPECT_EQ(NormalizePath("/..."), "/...");
}

TEST(ResolvePathTest, AbsolutePathIsNormalized) {
  AgentState s;
  EXPECT_EQ(s.ResolvePath("/tmp/x/../y", User()), "/tmp/y");
}

TEST(ResolvePathTest, TildeIsHome) {
  AgentState s;
  EXPECT_EQ(s.ResolvePath("~", User()), "/home/user");
  EXPECT_EQ(s.ResolvePath("~/", User()), "/home/user");
  EXPECT_EQ(s.ResolvePath("~/docs/a.txt", User()), "/home/user/docs/a.txt");
  EXPECT_EQ(s.ResolvePath("~/../root", User()), "/home/root");
}

TEST(ResolvePathTest, TildeUserIsJustARelativeName) {
  AgentState s;
  EXPECT_EQ(s.ResolvePath("~root/x", User()), "/home/user/~root/x");
}

TEST(ResolvePathTest, RelativeIsUnderHome) {
  AgentState s;
  EXPECT_EQ(s.ResolvePath("a.txt", User()), "/home/user/a.txt");
  EXPECT_EQ(s.ResolvePath("./dir/../b.txt", User()), "/home/user/b.txt");
  // Relative paths are not confined to home; they are only resolved against it.
  EXPECT_EQ(s.ResolvePath("../../etc/passwd", User()), "/etc/passwd");
  EXPECT_EQ(s.ResolvePath("../../../../..", User()), "/");
}

TEST(ResolvePathTest, RelativeIgnoresDefaultWorkdir) {
  AgentState s;
  s.default_workdir = "/work";
  EXPECT_EQ(s.ResolvePath("a.txt", User()), "/home/user/a.txt");
}

TEST(ResolvePathTest, EmptyIsHomeWithoutDefaultWorkdir) {
  AgentState s;
  EXPECT_EQ(s.ResolvePath("", User()), "/home/user");
}

TEST(ResolvePathTest, EmptyIsDefaultWorkdirWhenSet) {
  AgentState s;
  s.default_workdir = "/work/./project/";
  EXPECT_EQ(s.ResolvePath("", User()), "/work/project");
}

TEST(ResolvePathTest, HomeOfRootUser) {
  AgentState s;
  sys::UserInfo root;
  root.name = "root";
  root.home = "/root";
  EXPECT_EQ(s.ResolvePath("~/x", root), "/root/x");
  sys::UserInfo slash;
  slash.home = "/";
  EXPECT_EQ(s.ResolvePath("x", slash), "/x");
}

class AgentStateUsersTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-agent-state-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    std::filesystem::create_directories(root_ + "/etc");
    std::ofstream(root_ + "/etc/passwd") << "root:x:0:0:root:/root:/bin/bash\n"
                                            "user:x:1000:1000::/home/user:/bin/bash\n";
    std::ofstream(root_ + "/etc/group") << "root:x:0:\nuser:x:1000:\n";
    state_.users = sys::UserDb(root_);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  http::RequestHead WithAuth(std::string_view value) {
    http::RequestHead head;
    head.headers.set("Authorization", value);
    return head;
  }

  std::string root_;
  AgentState state_;
};

TEST_F(AgentStateUsersTest, NoAuthUsesDefaultUser) {
  auto u = state_.UserForRequest(http::RequestHead());
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u->name, "root");
  state_.default_user = "user";
  EXPECT_EQ(state_.UserForRequest(http::RequestHead())->name, "user");
}

TEST_F(AgentStateUsersTest, BasicAuthSelectsUser) {
  auto u = state_.UserForRequest(WithAuth("Basic " + Base64Encode("user:")));
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->home, "/home/user");
}

TEST_F(AgentStateUsersTest, UnknownUserIsUnauthenticated) {
  auto u = state_.UserForRequest(WithAuth("Basic " + Base64Encode("ghost:")));
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code(), Errc::kUnauthenticated);
  EXPECT_EQ(u.error().message(), "invalid user: 'ghost'");
}

TEST_F(AgentStateUsersTest, MalformedAuthIsUnauthenticated) {
  auto u = state_.UserForRequest(WithAuth("Bearer x"));
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code(), Errc::kUnauthenticated);
}

TEST_F(AgentStateUsersTest, UserByNameFallsBackToDefault) {
  state_.default_user = "user";
  EXPECT_EQ(state_.UserByName("")->name, "user");
  EXPECT_EQ(state_.UserByName("root")->name, "root");
  state_.default_user = "ghost";
  auto u = state_.UserByName("");
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code(), Errc::kUnauthenticated);
}

}  // namespace
}  // namespace kiln::envd
