#include "kilnd/template/rootfs_builder.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace kiln::kilnd::tmpl {
namespace {

namespace fs = std::filesystem;

// A tree shaped like a fresh debootstrap (only the parts CustomizeRootfs touches).
class CustomizeRootfsTest : public testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (chown to 1000)";
    char tmpl[] = "/tmp/kiln-customize-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    root_ = base_ / "rootfs";
    for (const char* d : {"etc/skel", "etc/sudoers.d", "var/cache/apt/archives/partial", "home",
                          "usr/bin", "outside"}) {
      fs::create_directories((d == std::string("outside") ? base_ : root_) / d);
    }
    chmod(root_.c_str(), 0700);
    Write("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    Write("etc/group", "root:x:0:\nsudo:x:27:\n");
    Write("etc/shadow", "root:*:19800:0:99999:7:::\n");
    Write("etc/gshadow", "root:*::\nsudo:*::\n");
    Write("etc/skel/.bashrc", "# bashrc\n");
    Write("etc/skel/.profile", "# profile\n");
    Write("var/cache/apt/archives/bash_5.2_amd64.deb", "deb");
    Write("var/cache/apt/pkgcache.bin", "bin");
    fs::create_directories(root_ / "var/lib/apt/lists/partial");
    Write("var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages", "P");
    std::ofstream(base_ / "outside/resolv.conf") << "nameserver 10.0.0.1\n";
    fs::create_symlink(base_ / "outside/resolv.conf", root_ / "etc/resolv.conf");
    envd_ = base_ / "kiln-envd";
    std::ofstream(envd_) << "#!envd";
    auto tree = RootfsTree::Open(root_);
    ASSERT_TRUE(tree);
    tree_.emplace(std::move(*tree));
  }
  void TearDown() override {
    if (!base_.empty()) fs::remove_all(base_);
  }

  void Write(const std::string& rel, const std::string& text) {
    std::ofstream(root_ / rel) << text;
  }
  std::string Read(const std::string& rel) {
    std::ifstream in(root_ / rel);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  struct stat Stat(const std::string& rel) {
    struct stat st {};
    lstat((root_ / rel).c_str(), &st);
    return st;
  }
  Recipe BaseRecipe() { return BuiltinRecipes().at(0); }

  fs::path base_, root_, envd_;
  std::optional<RootfsTree> tree_;
};

TEST_F(CustomizeRootfsTest, AddsUserSudoHostFilesAndEnvd) {
  auto st = CustomizeRootfs(*tree_, BaseRecipe(), envd_, 20000);
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(Stat(".").st_mode & 07777, 0755u);
  EXPECT_NE(Read("etc/passwd").find("\nuser:x:1000:1000::/home/user:/bin/bash\n"),
            std::string::npos);
  EXPECT_NE(Read("etc/group").find("sudo:x:27:user\n"), std::string::npos);
  EXPECT_NE(Read("etc/shadow").find("\nuser:!:20000:"), std::string::npos);

  struct stat home = Stat("home/user");
  EXPECT_TRUE(S_ISDIR(home.st_mode));
  EXPECT_EQ(home.st_uid, 1000u);
  EXPECT_EQ(home.st_gid, 1000u);
  EXPECT_EQ(Read("home/user/.bashrc"), "# bashrc\n");
  EXPECT_EQ(Stat("home/user/.profile").st_uid, 1000u);

  struct stat sudoers = Stat("etc/sudoers.d/user");
  EXPECT_EQ(sudoers.st_mode & 07777, 0440u);
  EXPECT_EQ(sudoers.st_uid, 0u);
  EXPECT_EQ(Read("etc/sudoers.d/user"), "user ALL=(ALL:ALL) NOPASSWD: ALL\n");

  EXPECT_EQ(Read("etc/hostname"), "sandbox\n");
  EXPECT_NE(Read("etc/hosts").find("127.0.0.1\tlocalhost sandbox\n"), std::string::npos);
  EXPECT_TRUE(S_ISREG(Stat("etc/resolv.conf").st_mode));
  std::ifstream host_resolv(base_ / "outside/resolv.conf");
  std::string line;
  std::getline(host_resolv, line);
  EXPECT_EQ(line, "nameserver 10.0.0.1");  // the symlink was replaced, not followed

  EXPECT_FALSE(fs::exists(root_ / "var/cache/apt/archives/bash_5.2_amd64.deb"));
  EXPECT_FALSE(fs::exists(root_ / "var/cache/apt/pkgcache.bin"));
  EXPECT_TRUE(fs::is_directory(root_ / "var/cache/apt/archives/partial"));
  EXPECT_TRUE(fs::is_empty(root_ / "var/lib/apt/lists/partial"));
  EXPECT_EQ(std::distance(fs::directory_iterator(root_ / "var/lib/apt/lists"), {}), 1);

  EXPECT_EQ(Read("usr/local/bin/kiln-envd"), "#!envd");
  EXPECT_EQ(Stat("usr/local/bin/kiln-envd").st_mode & 07777, 0755u);
  EXPECT_TRUE(S_ISLNK(Stat("usr/local/bin/sudo").st_mode));
  EXPECT_EQ(fs::read_symlink(root_ / "usr/local/bin/sudo"), "/.kiln/envd");
  EXPECT_EQ(Stat("tmp").st_mode & 07777, 01777u);
  for (const char* d : {"proc", "sys", "dev/pts", "run"})
    EXPECT_TRUE(fs::is_directory(root_ / d)) << d;
}

TEST_F(CustomizeRootfsTest, FailsCleanlyWithoutSudoGroup) {
  Write("etc/group", "root:x:0:\n");
  auto st = CustomizeRootfs(*tree_, BaseRecipe(), envd_, 20000);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("add user user:"), std::string::npos) << st.error().message();
  EXPECT_EQ(st.error().code(), Errc::kNotFound);
}

}  // namespace
}  // namespace kiln::kilnd::tmpl
