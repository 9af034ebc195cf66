#include "kilnd/template/account_files.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace kiln::kilnd::tmpl {
namespace {

// A temporary tree with Debian's stock account files.
class AccountFilesTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-accounts-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    std::filesystem::create_directories(root_ / "etc");
    Write("etc/passwd",
          "root:x:0:0:root:/root:/bin/bash\n"
          "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
          0644);
    Write("etc/group",
          "root:x:0:\n"
          "sudo:x:27:\n"
          "audio:x:29:pulse\n"
          "users:x:100:\n"
          "nogroup:x:65534:\n",
          0644);
    Write("etc/shadow",
          "root:*:19800:0:99999:7:::\n"
          "daemon:*:19800:0:99999:7:::\n"
          "nobody:*:19800:0:99999:7:::\n",
          0640);
    Write("etc/gshadow",
          "root:*::\n"
          "sudo:*::\n"
          "audio:*::pulse\n"
          "users:*::\n"
          "nogroup:*::\n",
          0640);
    auto tree = RootfsTree::Open(root_);
    ASSERT_TRUE(tree) << tree.error().message();
    tree_.emplace(std::move(*tree));
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  void Write(const std::string& rel, const std::string& text, mode_t mode) {
    std::ofstream(root_ / rel) << text;
    chmod((root_ / rel).c_str(), mode);
  }
  std::string Read(const std::string& rel) {
    std::ifstream in(root_ / rel);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  mode_t Mode(const std::string& rel) {
    struct stat st {};
    stat((root_ / rel).c_str(), &st);
    return st.st_mode & 07777;
  }
  NewUser User() { return NewUser{"user", 1000, 1000, "/home/user", "/bin/bash", {"sudo"}, 20000}; }

  std::filesystem::path root_;
  std::optional<RootfsTree> tree_;
};

TEST_F(AccountFilesTest, AppendsLinesInExactFormats) {
  NewUser user = User();
  user.groups = {"sudo", "audio"};
  ASSERT_TRUE(AddUser(*tree_, user));
  EXPECT_EQ(Read("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\n"
            "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            "user:x:1000:1000::/home/user:/bin/bash\n");
  EXPECT_EQ(Read("etc/group"),
            "root:x:0:\n"
            "sudo:x:27:user\n"
            "audio:x:29:pulse,user\n"
            "users:x:100:\n"
            "nogroup:x:65534:\n"
            "user:x:1000:\n");
  EXPECT_EQ(Read("etc/shadow"),
            "root:*:19800:0:99999:7:::\n"
            "daemon:*:19800:0:99999:7:::\n"
            "nobody:*:19800:0:99999:7:::\n"
            "user:!:20000:0:99999:7:::\n");
  EXPECT_EQ(Read("etc/gshadow"),
            "root:*::\n"
            "sudo:*::user\n"
            "audio:*::pulse,user\n"
            "users:*::\n"
            "nogroup:*::\n"
            "user:!::\n");
}

TEST_F(AccountFilesTest, KeepsModesAndLeavesNoTempFiles) {
  ASSERT_TRUE(AddUser(*tree_, User()));
  EXPECT_EQ(Mode("etc/passwd"), 0644u);
  EXPECT_EQ(Mode("etc/shadow"), 0640u);
  EXPECT_EQ(Mode("etc/gshadow"), 0640u);
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(root_ / "etc")) {
    EXPECT_FALSE(e.path().filename().string().starts_with(".")) << e.path();
    ++entries;
  }
  EXPECT_EQ(entries, 4);
}

TEST_F(AccountFilesTest, RejectsTakenNameUidAndGid) {
  ASSERT_TRUE(AddUser(*tree_, User()));
  std::string passwd = Read("etc/passwd");
  auto again = AddUser(*tree_, User());
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Errc::kAlreadyExists);

  NewUser same_uid = User();
  same_uid.name = "other";
  same_uid.gid = 1001;
  EXPECT_EQ(AddUser(*tree_, same_uid).error().code(), Errc::kAlreadyExists);

  NewUser same_gid = User();
  same_gid.name = "other";
  same_gid.uid = 1001;
  EXPECT_EQ(AddUser(*tree_, same_gid).error().code(), Errc::kAlreadyExists);

  NewUser group_name = User();
  group_name.name = "audio";
  group_name.uid = group_name.gid = 1005;
  EXPECT_EQ(AddUser(*tree_, group_name).error().code(), Errc::kAlreadyExists);
  EXPECT_EQ(Read("etc/passwd"), passwd);
}

TEST_F(AccountFilesTest, MissingGroupChangesNothing) {
  NewUser user = User();
  user.groups = {"wheel"};
  auto st = AddUser(*tree_, user);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kNotFound);
  EXPECT_EQ(Read("etc/passwd").find("user:"), std::string::npos);
  EXPECT_EQ(Read("etc/group").find("user:x:1000"), std::string::npos);
  EXPECT_EQ(Read("etc/group").find("27:user"), std::string::npos);
}

TEST_F(AccountFilesTest, RejectsBadNamesAndFields) {
  for (const char* name : {"", "User", "1user", "us:er", "a/b", "user\n"}) {
    NewUser user = User();
    user.name = name;
    EXPECT_EQ(AddUser(*tree_, user).error().code(), Errc::kInvalidArgument) << name;
  }
  NewUser user = User();
  user.home = "/home/a:b";
  EXPECT_EQ(AddUser(*tree_, user).error().code(), Errc::kInvalidArgument);
}

TEST_F(AccountFilesTest, ShadowFilesAreOptional) {
  std::filesystem::remove(root_ / "etc/shadow");
  std::filesystem::remove(root_ / "etc/gshadow");
  ASSERT_TRUE(AddUser(*tree_, User()));
  EXPECT_FALSE(std::filesystem::exists(root_ / "etc/shadow"));
  EXPECT_NE(Read("etc/passwd").find("user:x:1000:1000::/home/user:/bin/bash\n"), std::string::npos);
}

TEST_F(AccountFilesTest, MissingPasswdIsNotFound) {
  std::filesystem::remove(root_ / "etc/passwd");
  EXPECT_EQ(AddUser(*tree_, User()).error().code(), Errc::kNotFound);
}

TEST(AccountLineTest, AddGroupMember) {
  EXPECT_EQ(AddGroupMember("sudo:x:27:", "user"), "sudo:x:27:user");
  EXPECT_EQ(AddGroupMember("sudo:x:27:a,b", "user"), "sudo:x:27:a,b,user");
  EXPECT_EQ(AddGroupMember("sudo:x:27:user", "user"), "sudo:x:27:user");
  EXPECT_EQ(AddGroupMember("sudo:x:27", "user"), "sudo:x:27:user");
  EXPECT_EQ(AddGroupMember("sudo:*::", "user"), "sudo:*::user");
}

TEST(AccountLineTest, SplitKeepsEmptyFields) {
  EXPECT_EQ(SplitAccountLine("a:x:1:"), (std::vector<std::string>{"a", "x", "1", ""}));
  EXPECT_EQ(SplitAccountLine(""), std::vector<std::string>{""});
}

}  // namespace
}  // namespace kiln::kilnd::tmpl
