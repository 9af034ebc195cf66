#include "envd/filesystem/fs_ops.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <string>
#include <vector>

namespace kiln::envd::fsops {
namespace {

namespace fs = std::filesystem;

class FsOpsTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-fsops-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string P(const std::string& rel) const { return dir_ + "/" + rel; }
  void WriteFile(const std::string& rel, const std::string& data) {
    std::ofstream(P(rel)) << data;
  }
  Owner Me() const { return Owner{getuid(), getgid()}; }

  std::vector<std::string> List(const std::string& path, uint32_t depth) {
    OwnerNames names(users_);
    auto entries = ListDir(path, depth, names);
    EXPECT_TRUE(entries) << entries.error().message();
    std::vector<std::string> out;
    if (entries) {
      for (const EntryInfo& e : *entries) out.push_back(e.path);
    }
    return out;
  }

  // Tree: a/ (a/x/ (a/x/deep.txt), a/f1), b/, top.txt
  void MakeTree() {
    fs::create_directories(P("a/x"));
    fs::create_directory(P("b"));
    WriteFile("a/x/deep.txt", "d");
    WriteFile("a/f1", "1");
    WriteFile("top.txt", "t");
  }

  std::string dir_;
  sys::UserDb users_;
};

TEST_F(FsOpsTest, ListDirDepthOneIsDirectChildrenSorted) {
  MakeTree();
  EXPECT_EQ(List(dir_, 1), (std::vector<std::string>{P("a"), P("b"), P("top.txt")}));
}

TEST_F(FsOpsTest, ListDirDepthTwoIsDepthFirst) {
  MakeTree();
  EXPECT_EQ(List(dir_, 2),
            (std::vector<std::string>{P("a"), P("a/f1"), P("a/x"), P("b"), P("top.txt")}));
}

TEST_F(FsOpsTest, ListDirDeepEnoughShowsEverything) {
  MakeTree();
  EXPECT_EQ(List(dir_, 10), (std::vector<std::string>{P("a"), P("a/f1"), P("a/x"),
                                                      P("a/x/deep.txt"), P("b"), P("top.txt")}));
}

TEST_F(FsOpsTest, ListDirZeroDepthMeansOne) {
  MakeTree();
  EXPECT_EQ(List(dir_, 0).size(), 3u);
}

TEST_F(FsOpsTest, ListDirFollowsSymlinkedRootAndKeepsRequestedPrefix) {
  MakeTree();
  ASSERT_EQ(symlink(P("a").c_str(), P("alink").c_str()), 0);
  EXPECT_EQ(List(P("alink"), 2),
            (std::vector<std::string>{P("alink/f1"), P("alink/x"), P("alink/x/deep.txt")}));
}

TEST_F(FsOpsTest, ListDirDoesNotDescendIntoSymlinkedSubdirectories) {
  MakeTree();
  ASSERT_EQ(symlink(P("a").c_str(), P("b/loop").c_str()), 0);
  ASSERT_EQ(symlink(P("b").c_str(), P("a/x/back").c_str()), 0);  // a cycle, if followed
  auto paths = List(P("b"), 100);
  EXPECT_EQ(paths, (std::vector<std::string>{P("b/loop")}));
}

TEST_F(FsOpsTest, ListDirNamesAndRootPaths) {
  MakeTree();
  OwnerNames names(users_);
  auto entries = ListDir(dir_, 2, names);
  ASSERT_TRUE(entries);
  EXPECT_EQ((*entries)[2].name, "x");
  EXPECT_EQ((*entries)[2].type, FileType::kDirectory);
}

TEST_F(FsOpsTest, ListDirMissingIsNotFoundAndFileIsInvalid) {
  MakeTree();
  OwnerNames names(users_);
  auto missing = ListDir(P("nope"), 1, names);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Errc::kNotFound);
  auto file = ListDir(P("top.txt"), 1, names);
  ASSERT_FALSE(file);
  EXPECT_EQ(file.error().code(), Errc::kInvalidArgument);
}

TEST_F(FsOpsTest, ListDirFailsBeyondEntryLimit) {
  MakeTree();
  OwnerNames names(users_);
  auto r = ListDir(dir_, 10, names, /*max_entries=*/4);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kResourceExhausted);
}

TEST_F(FsOpsTest, ListDirWalkInSingleStepsMatchesListDir) {
  MakeTree();
  auto walk = ListDirWalk::Start(dir_, 10);
  ASSERT_TRUE(walk);
  OwnerNames names(users_);
  int steps = 0;
  while (!walk->done()) {
    ASSERT_TRUE(walk->Step(names, 1));
    ++steps;
  }
  std::vector<std::string> paths;
  for (const EntryInfo& e : walk->TakeEntries()) paths.push_back(e.path);
  EXPECT_EQ(paths, List(dir_, 10));
  EXPECT_GE(steps, 6);
}

TEST_F(FsOpsTest, MakeDirCreatesParents) {
  ASSERT_TRUE(MakeDir(P("x/y/z"), Me()));
  struct stat st;
  ASSERT_EQ(stat(P("x/y/z").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_uid, getuid());
  EXPECT_EQ(st.st_gid, getgid());
}

TEST_F(FsOpsTest, MakeDirExistingDirectoryIsAlreadyExists) {
  fs::create_directory(P("d"));
  auto st = MakeDir(P("d"), Me());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kAlreadyExists);
}

TEST_F(FsOpsTest, MakeDirOverFileIsInvalidArgument) {
  WriteFile("f", "x");
  auto over = MakeDir(P("f"), Me());
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), Errc::kInvalidArgument);
  auto under = MakeDir(P("f/sub"), Me());
  ASSERT_FALSE(under);
  EXPECT_EQ(under.error().code(), Errc::kInvalidArgument);
}

TEST_F(FsOpsTest, MakeDirsThroughSymlinkedDirectory) {
  fs::create_directory(P("real"));
  ASSERT_EQ(symlink(P("real").c_str(), P("link").c_str()), 0);
  ASSERT_TRUE(MakeDirs(P("link/new"), Me()));
  EXPECT_TRUE(fs::is_directory(P("real/new")));
}

TEST_F(FsOpsTest, MoveRenamesAndCreatesParents) {
  WriteFile("src.txt", "data");
  ASSERT_TRUE(Move(P("src.txt"), P("p/q/dst.txt"), Me()));
  EXPECT_FALSE(fs::exists(P("src.txt")));
  std::ifstream in(P("p/q/dst.txt"));
  std::string s;
  in >> s;
  EXPECT_EQ(s, "data");
}

TEST_F(FsOpsTest, MoveMissingSourceIsNotFound) {
  auto st = Move(P("nope"), P("dst"), Me());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kNotFound);
  EXPECT_FALSE(fs::exists(P("dst")));
}

TEST_F(FsOpsTest, MoveReplacesFile) {
  WriteFile("a", "new");
  WriteFile("b", "old");
  ASSERT_TRUE(Move(P("a"), P("b"), Me()));
  std::ifstream in(P("b"));
  std::string s;
  in >> s;
  EXPECT_EQ(s, "new");
}

TEST_F(FsOpsTest, MoveDirectoryOntoNonEmptyDirectoryFails) {
  fs::create_directories(P("a"));
  fs::create_directories(P("b/c"));
  auto st = Move(P("a"), P("b"), Me());
  ASSERT_FALSE(st);
  EXPECT_TRUE(fs::exists(P("a")));
}

TEST_F(FsOpsTest, MoveAcrossFileSystemsCopiesTree) {
  struct stat tmp_st, shm_st;
  if (stat("/dev/shm", &shm_st) != 0 || stat(dir_.c_str(), &tmp_st) != 0 ||
      tmp_st.st_dev == shm_st.st_dev) {
    GTEST_SKIP() << "needs /dev/shm on another file system than " << dir_;
  }
  fs::create_directories(P("t/sub"));
  WriteFile("t/sub/f.txt", "payload");
  ASSERT_EQ(symlink("sub/f.txt", P("t/link").c_str()), 0);
  chmod(P("t/sub/f.txt").c_str(), 0600);
  std::string dst = "/dev/shm/kiln-fsops-move-" + std::to_string(getpid());
  ASSERT_TRUE(Move(P("t"), dst, Me()));
  EXPECT_FALSE(fs::exists(P("t")));
  EXPECT_TRUE(fs::is_symlink(dst + "/link"));
  EXPECT_EQ(fs::read_symlink(dst + "/link"), "sub/f.txt");
  struct stat st;
  ASSERT_EQ(stat((dst + "/sub/f.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 7);
  fs::remove_all(dst);
}

TEST_F(FsOpsTest, RemoveAllIsRecursive) {
  MakeTree();
  ASSERT_TRUE(RemoveAll(P("a")));
  EXPECT_FALSE(fs::exists(P("a")));
  EXPECT_TRUE(fs::exists(P("b")));
}

TEST_F(FsOpsTest, TreeRemovalInSingleSteps) {
  MakeTree();
  fs::create_directories(P("a/x/y/z"));
  auto removal = TreeRemoval::Start(P("a"));
  ASSERT_TRUE(removal) << removal.error().message();
  int steps = 0;
  while (!removal->done()) {
    ASSERT_TRUE(removal->Step(1));
    ++steps;
  }
  EXPECT_FALSE(fs::exists(P("a")));
  EXPECT_TRUE(fs::exists(P("top.txt")));
  EXPECT_GE(steps, 5);
}

TEST_F(FsOpsTest, TreeRemovalOfAFileIsDoneAtOnce) {
  WriteFile("f", "x");
  auto removal = TreeRemoval::Start(P("f"));
  ASSERT_TRUE(removal);
  EXPECT_TRUE(removal->done());
  EXPECT_FALSE(fs::exists(P("f")));
}

TEST_F(FsOpsTest, RemoveAllMissingIsSuccess) {
  EXPECT_TRUE(RemoveAll(P("nope")));
  EXPECT_TRUE(RemoveAll(P("nope/deeper")));
}

TEST_F(FsOpsTest, RemoveAllDoesNotFollowSymlinks) {
  MakeTree();
  ASSERT_EQ(symlink(P("a").c_str(), P("b/link").c_str()), 0);
  ASSERT_TRUE(RemoveAll(P("b")));
  EXPECT_FALSE(fs::exists(P("b")));
  EXPECT_TRUE(fs::exists(P("a/x/deep.txt")));
}

TEST_F(FsOpsTest, RemoveAllRefusesRoot) {
  auto st = RemoveAll("/");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kInvalidArgument);
}

TEST(CheckClientPathTest, RejectsNulAndOverlongPaths) {
  EXPECT_TRUE(CheckClientPath("/home/user/file"));
  EXPECT_TRUE(CheckClientPath(""));
  auto nul = CheckClientPath(std::string_view("/a\0b", 4));
  ASSERT_FALSE(nul);
  EXPECT_EQ(nul.error().code(), Errc::kInvalidArgument);
  auto longp = CheckClientPath(std::string(PATH_MAX, 'a'));
  ASSERT_FALSE(longp);
  EXPECT_EQ(longp.error().code(), Errc::kInvalidArgument);
}

TEST(JoinPathTest, NoDoubleSlash) {
  EXPECT_EQ(JoinPath("/", "a"), "/a");
  EXPECT_EQ(JoinPath("/x", "a"), "/x/a");
}

TEST_F(FsOpsTest, TempDirIsNotANetworkFileSystem) {
  auto r = IsNetworkFilesystem(dir_);
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  EXPECT_FALSE(IsNetworkFilesystem(P("missing")));
}

}  // namespace
}  // namespace kiln::envd::fsops
