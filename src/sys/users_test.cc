#include "sys/users.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <string>

namespace kiln::sys {
namespace {

// A temporary root with etc/passwd and etc/group.
class UserDbTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-users-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    std::filesystem::create_directories(root_ + "/etc");
    Write("etc/passwd",
          "# comment line\n"
          "root:x:0:0:root:/root:/bin/bash\n"
          "\n"
          "user:x:1000:1000:A User,,,:/home/user:/bin/bash\n"
          "user2:x:1001:1001::/home/user2:/bin/sh\n"
          "nohome:x:1002:1002:::/bin/sh\n"
          "short:x:1003\n"
          "badid:x:abc:1004::/home/badid:/bin/sh\n"
          "negative:x:-1:1005::/home/neg:/bin/sh\n");
    Write("etc/group",
          "root:x:0:\n"
          "user:x:1000:user\n"
          "sudo:x:27:user2,user\n"
          "docker:x:999:username,user2\n"
          "audio:x:29:user\n"
          "broken:x:zz:user\n"
          "nomembers:x:50\n");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  void Write(const std::string& rel, const std::string& text) {
    std::ofstream(root_ + "/" + rel) << text;
  }

  std::string root_;
};

TEST_F(UserDbTest, LooksUpUserWithPrimaryAndSupplementaryGroups) {
  UserDb db(root_ + "/");
  auto u = db.Lookup("user");
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u->name, "user");
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->gid, 1000u);
  EXPECT_EQ(u->home, "/home/user");
  EXPECT_EQ(u->shell, "/bin/bash");
  // Primary first, listed once even though group "user" also names the user as a member;
  // "docker" lists "username", which is not "user"; "broken" has a bad gid.
  EXPECT_EQ(u->groups, (std::vector<gid_t>{1000, 27, 29}));
}

TEST_F(UserDbTest, RootWithoutTrailingSlashWorks) {
  UserDb db(root_);
  auto u = db.Lookup("user2");
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u->uid, 1001u);
  EXPECT_EQ(u->groups, (std::vector<gid_t>{1001, 27, 999}));
}

TEST_F(UserDbTest, NamePrefixIsNotAMatch) {
  UserDb db(root_);
  auto u = db.Lookup("use");
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code(), Errc::kNotFound);
}

TEST_F(UserDbTest, UnknownUserIsNotFound) {
  UserDb db(root_);
  auto u = db.Lookup("nobody-here");
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code(), Errc::kNotFound);
  EXPECT_NE(u.error().message().find("nobody-here"), std::string::npos);
}

TEST_F(UserDbTest, EmptyNameIsInvalid) {
  UserDb db(root_);
  auto u = db.Lookup("");
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code(), Errc::kInvalidArgument);
}

TEST_F(UserDbTest, MalformedLinesAreSkipped) {
  UserDb db(root_);
  EXPECT_FALSE(db.Lookup("short"));
  EXPECT_FALSE(db.Lookup("badid"));
  EXPECT_FALSE(db.Lookup("negative"));
  EXPECT_FALSE(db.Lookup("# comment line"));
  // Lines after the malformed ones still parse.
  EXPECT_TRUE(db.Lookup("root"));
}

TEST_F(UserDbTest, EmptyHomeFallsBackToSlash) {
  UserDb db(root_);
  auto u = db.Lookup("nohome");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->home, "/");
}

TEST_F(UserDbTest, MissingAccountFilesMeanNotFound) {
  UserDb db(root_ + "/does-not-exist");
  auto u = db.Lookup("root");
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code(), Errc::kNotFound);
  EXPECT_EQ(db.UserName(0), "0");
}

TEST_F(UserDbTest, MissingGroupFileGivesOnlyPrimaryGroup) {
  std::filesystem::remove(root_ + "/etc/group");
  UserDb db(root_);
  auto u = db.Lookup("user");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->groups, (std::vector<gid_t>{1000}));
}

TEST_F(UserDbTest, NamesIdsAndFallsBackToNumbers) {
  UserDb db(root_);
  EXPECT_EQ(db.UserName(0), "root");
  EXPECT_EQ(db.UserName(1001), "user2");
  EXPECT_EQ(db.UserName(4242), "4242");
  EXPECT_EQ(db.GroupName(27), "sudo");
  EXPECT_EQ(db.GroupName(50), "nomembers");
  EXPECT_EQ(db.GroupName(4242), "4242");
}

TEST(UserDbHostTest, DefaultRootReadsHostFiles) {
  UserDb db;
  auto root = db.Lookup("root");
  ASSERT_TRUE(root) << root.error().message();
  EXPECT_EQ(root->uid, 0u);
  EXPECT_EQ(db.UserName(0), "root");
}

}  // namespace
}  // namespace kiln::sys
