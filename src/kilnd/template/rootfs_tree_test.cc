#include "kilnd/template/rootfs_tree.h"

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

// A temp dir holding `tree/` (the rootfs) and `outside/` (stands for the host).
class RootfsTreeTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-tree-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    fs::create_directories(base_ / "tree/etc");
    fs::create_directories(base_ / "outside");
    std::ofstream(base_ / "outside/hostname") << "host\n";
    auto tree = RootfsTree::Open(base_ / "tree");
    ASSERT_TRUE(tree) << tree.error().message();
    tree_.emplace(std::move(*tree));
  }
  void TearDown() override { fs::remove_all(base_); }

  std::string Read(const fs::path& p) {
    std::ifstream in(p);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  struct stat Stat(const fs::path& p) {
    struct stat st {};
    lstat(p.c_str(), &st);
    return st;
  }

  fs::path base_;
  std::optional<RootfsTree> tree_;
};

TEST_F(RootfsTreeTest, WriteReadAndAttributes) {
  ASSERT_TRUE(tree_->WriteFile("/etc/hostname", "sandbox\n", {0640, getuid(), getgid()}));
  EXPECT_EQ(Read(base_ / "tree/etc/hostname"), "sandbox\n");
  EXPECT_EQ(Stat(base_ / "tree/etc/hostname").st_mode & 07777, 0640u);
  auto text = tree_->ReadFile("etc/hostname");
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "sandbox\n");
  EXPECT_TRUE(tree_->Exists("etc/hostname"));
  EXPECT_FALSE(tree_->Exists("etc/nothing"));
  EXPECT_EQ(tree_->ReadFile("etc/nothing").error().code(), Errc::kNotFound);
  EXPECT_EQ(tree_->ReadFile("etc").error().code(), Errc::kInvalidArgument);
}

TEST_F(RootfsTreeTest, WriteReplacesASymlinkInsteadOfFollowingIt) {
  fs::create_symlink(base_ / "outside/hostname", base_ / "tree/etc/hostname");
  ASSERT_TRUE(tree_->WriteFile("etc/hostname", "sandbox\n", {0644, getuid(), getgid()}));
  EXPECT_EQ(Read(base_ / "outside/hostname"), "host\n");
  EXPECT_TRUE(S_ISREG(Stat(base_ / "tree/etc/hostname").st_mode));
}

TEST_F(RootfsTreeTest, AbsoluteSymlinksResolveInsideTheTree) {
  // tree/etc2 -> <base>/outside: inside the tree that absolute path does not exist.
  fs::create_symlink(base_ / "outside", base_ / "tree/etc2");
  EXPECT_EQ(tree_->WriteFile("etc2/hostname", "x", {0644, getuid(), getgid()}).error().code(),
            Errc::kNotFound);
  // tree/up -> ../../outside: ".." stops at the tree's root.
  fs::create_symlink("../../outside", base_ / "tree/etc/up");
  EXPECT_FALSE(tree_->ReadFile("etc/up/hostname"));
  EXPECT_EQ(Read(base_ / "outside/hostname"), "host\n");
  // tree/lib -> /etc is resolved as tree/etc.
  fs::create_symlink("/etc", base_ / "tree/lib");
  ASSERT_TRUE(tree_->WriteFile("lib/via-link", "ok", {0644, getuid(), getgid()}));
  EXPECT_EQ(Read(base_ / "tree/etc/via-link"), "ok");
}

TEST_F(RootfsTreeTest, SymlinkIsStoredVerbatimAndReplacesWhatWasThere) {
  ASSERT_TRUE(tree_->MakeDirs("usr/local/bin", {0755, getuid(), getgid()}));
  ASSERT_TRUE(tree_->WriteFile("usr/local/bin/sudo", "old", {0755, getuid(), getgid()}));
  auto st = tree_->Symlink("/.kiln/envd", "/usr/local/bin/sudo", getuid(), getgid());
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_TRUE(S_ISLNK(Stat(base_ / "tree/usr/local/bin/sudo").st_mode));
  EXPECT_EQ(fs::read_symlink(base_ / "tree/usr/local/bin/sudo"), "/.kiln/envd");
  // Again over the link itself: replaced, not followed.
  ASSERT_TRUE(tree_->Symlink("/other", "usr/local/bin/sudo", getuid(), getgid()));
  EXPECT_EQ(fs::read_symlink(base_ / "tree/usr/local/bin/sudo"), "/other");
  EXPECT_EQ(std::distance(fs::directory_iterator(base_ / "tree/usr/local/bin"), {}), 1);
  EXPECT_FALSE(tree_->Symlink("/x", "no/such/dir/link", getuid(), getgid()));
}

TEST_F(RootfsTreeTest, ReplaceFileKeepsModeAndNeedsAFile) {
  std::ofstream(base_ / "tree/etc/shadow") << "old\n";
  chmod((base_ / "tree/etc/shadow").c_str(), 0640);
  ASSERT_TRUE(tree_->ReplaceFile("etc/shadow", "new\n"));
  EXPECT_EQ(Read(base_ / "tree/etc/shadow"), "new\n");
  EXPECT_EQ(Stat(base_ / "tree/etc/shadow").st_mode & 07777, 0640u);
  EXPECT_EQ(tree_->ReplaceFile("etc/missing", "x").error().code(), Errc::kNotFound);
  EXPECT_EQ(tree_->ReplaceFile("etc", "x").error().code(), Errc::kInvalidArgument);
}

TEST_F(RootfsTreeTest, RejectsPathsThatNameNoFile) {
  for (const char* p : {"", "/", ".", "etc/..", "etc/."}) {
    EXPECT_EQ(tree_->WriteFile(p, "x", {}).error().code(), Errc::kInvalidArgument) << p;
  }
}

TEST_F(RootfsTreeTest, MakeDirsCreatesMissingOnly) {
  chmod((base_ / "tree/etc").c_str(), 0700);
  ASSERT_TRUE(tree_->MakeDirs("/etc/sudoers.d/deep/er", {0750, getuid(), getgid()}));
  EXPECT_EQ(Stat(base_ / "tree/etc").st_mode & 07777, 0700u);
  EXPECT_EQ(Stat(base_ / "tree/etc/sudoers.d").st_mode & 07777, 0750u);
  EXPECT_TRUE(fs::is_directory(base_ / "tree/etc/sudoers.d/deep/er"));
  ASSERT_TRUE(tree_->MakeDirs("tmp", {01777, getuid(), getgid()}));
  EXPECT_EQ(Stat(base_ / "tree/tmp").st_mode & 07777, 01777u);
  std::ofstream(base_ / "tree/file") << "x";
  EXPECT_EQ(tree_->MakeDirs("file/sub", {}).error().code(), Errc::kInvalidArgument);
}

TEST_F(RootfsTreeTest, CopyDirContentsCopiesFilesDirsAndLinks) {
  fs::create_directories(base_ / "tree/etc/skel/.config");
  std::ofstream(base_ / "tree/etc/skel/.bashrc") << "PS1=x\n";
  chmod((base_ / "tree/etc/skel/.bashrc").c_str(), 0600);
  std::ofstream(base_ / "tree/etc/skel/.config/a") << "a";
  fs::create_symlink(".bashrc", base_ / "tree/etc/skel/.link");
  fs::create_directories(base_ / "tree/home/u");
  ASSERT_TRUE(tree_->CopyDirContents("etc/skel", "home/u", getuid(), getgid()));
  EXPECT_EQ(Read(base_ / "tree/home/u/.bashrc"), "PS1=x\n");
  EXPECT_EQ(Stat(base_ / "tree/home/u/.bashrc").st_mode & 07777, 0600u);
  EXPECT_EQ(Read(base_ / "tree/home/u/.config/a"), "a");
  EXPECT_EQ(fs::read_symlink(base_ / "tree/home/u/.link"), ".bashrc");
  EXPECT_EQ(tree_->CopyDirContents("etc/skel", "home/u", getuid(), getgid()).error().code(),
            Errc::kAlreadyExists);
}

TEST_F(RootfsTreeTest, CopyFileInAndRemoveFiles) {
  ASSERT_TRUE(tree_->MakeDirs("var/cache/apt/archives/partial", {0755, getuid(), getgid()}));
  for (const char* f : {"a.deb", "b.deb", "lock", "partial/c.deb"}) {
    std::ofstream(base_ / "tree/var/cache/apt/archives" / f) << "x";
  }
  fs::create_directories(base_ / "tree/var/cache/apt/archives/dir.deb");
  auto removed = tree_->RemoveFiles("var/cache/apt/archives", ".deb");
  ASSERT_TRUE(removed);
  EXPECT_EQ(*removed, 2);
  EXPECT_TRUE(fs::exists(base_ / "tree/var/cache/apt/archives/lock"));
  EXPECT_TRUE(fs::exists(base_ / "tree/var/cache/apt/archives/dir.deb"));
  EXPECT_EQ(*tree_->RemoveFiles("var/cache/apt/archives/partial", ""), 1);
  EXPECT_EQ(*tree_->RemoveFiles("no/such/dir", ""), 0);

  ASSERT_TRUE(
      tree_->CopyFileIn(base_ / "outside/hostname", "etc/copied", {0755, getuid(), getgid()}));
  EXPECT_EQ(Read(base_ / "tree/etc/copied"), "host\n");
  EXPECT_EQ(Stat(base_ / "tree/etc/copied").st_mode & 07777, 0755u);
  EXPECT_EQ(tree_->CopyFileIn(base_ / "outside/none", "etc/x", {}).error().code(), Errc::kNotFound);
}

}  // namespace
}  // namespace kiln::kilnd::tmpl
