#include "sys/tree_copy.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "base/unique_fd.h"

namespace kiln::sys {
namespace {

namespace fs = std::filesystem;

class TreeCopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (owners, whiteouts)";
    base_ = fs::path("/tmp") / ("kiln-treecopy-" + std::to_string(getpid()));
    fs::create_directories(base_ / "src");
    fs::create_directories(base_ / "dst");
  }
  void TearDown() override {
    std::error_code ec;
    if (!base_.empty()) fs::remove_all(base_, ec);
  }
  Status Copy(const TreeCopyOptions& options = {}) {
    UniqueFd s(open((base_ / "src").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    UniqueFd d(open((base_ / "dst").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return CopyTree(s.get(), d.get(), options);
  }
  void Write(const fs::path& rel, const std::string& data) {
    fs::create_directories((base_ / "src" / rel).parent_path());
    std::ofstream(base_ / "src" / rel) << data;
  }
  std::string Read(const fs::path& rel) {
    std::ifstream in(base_ / "dst" / rel);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  struct stat Lstat(const fs::path& rel) {
    struct stat st{};
    EXPECT_EQ(lstat((base_ / "dst" / rel).c_str(), &st), 0) << rel;
    return st;
  }
  fs::path base_;
};

TEST_F(TreeCopyTest, CopiesFilesDirsLinksOwnersModesAndTimes) {
  Write("a/b/file", "hello");
  auto src = base_ / "src";
  ASSERT_EQ(chmod((src / "a/b/file").c_str(), 0640), 0);
  ASSERT_EQ(chown((src / "a/b/file").c_str(), 100123, 100456), 0);
  ASSERT_EQ(chmod((src / "a").c_str(), 0710), 0);
  ASSERT_EQ(symlink("b/file", (src / "a/link").c_str()), 0);
  ASSERT_EQ(symlink("/etc/passwd", (src / "escape").c_str()), 0);
  ASSERT_EQ(link((src / "a/b/file").c_str(), (src / "a/hard").c_str()), 0);
  ASSERT_EQ(mkfifo((src / "fifo").c_str(), 0620), 0);
  ASSERT_EQ(chmod((src / "fifo").c_str(), 0620), 0);  // past the umask
  timespec times[2] = {{1000, 0}, {2000, 500}};
  ASSERT_EQ(utimensat(AT_FDCWD, (src / "a/b/file").c_str(), times, 0), 0);
  ASSERT_EQ(utimensat(AT_FDCWD, (src / "a/b").c_str(), times, 0), 0);

  auto st = Copy();
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(Read("a/b/file"), "hello");
  auto f = Lstat("a/b/file");
  EXPECT_EQ(f.st_mode & 07777, 0640u);
  EXPECT_EQ(f.st_uid, 100123u);
  EXPECT_EQ(f.st_gid, 100456u);
  EXPECT_EQ(f.st_mtim.tv_sec, 2000);
  EXPECT_EQ(f.st_mtim.tv_nsec, 500);
  EXPECT_EQ(f.st_nlink, 2u);
  EXPECT_EQ(Lstat("a/hard").st_ino, f.st_ino);
  EXPECT_EQ(Lstat("a").st_mode & 07777, 0710u);
  EXPECT_EQ(Lstat("a/b").st_mtim.tv_sec, 2000);  // set after its entries
  EXPECT_TRUE(S_ISLNK(Lstat("a/link").st_mode));
  EXPECT_EQ(fs::read_symlink(base_ / "dst/a/link"), "b/file");
  EXPECT_TRUE(S_ISLNK(Lstat("escape").st_mode));  // copied as a link, never followed
  EXPECT_TRUE(S_ISFIFO(Lstat("fifo").st_mode));
  EXPECT_EQ(Lstat("fifo").st_mode & 07777, 0620u);
}

TEST_F(TreeCopyTest, KeepsWhiteoutsAndOpaqueDirsButNoDevicesOrSockets) {
  auto src = base_ / "src";
  ASSERT_EQ(mknod((src / "deleted").c_str(), S_IFCHR | 0, makedev(0, 0)), 0);
  ASSERT_EQ(mknod((src / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  fs::create_directories(src / "opaque");
  ASSERT_EQ(setxattr((src / "opaque").c_str(), "user.overlay.opaque", "y", 1, 0), 0);
  ASSERT_EQ(setxattr((src / "opaque").c_str(), "user.overlay.origin", "zz", 2, 0), 0);
  ASSERT_EQ(setxattr((src / "opaque").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  Write("opaque/f", "x");
  ASSERT_EQ(setxattr((src / "opaque/f").c_str(), "user.e2b.tag", "v1", 2, 0), 0);
  int sock = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strcpy(sa.sun_path, (src / "sock").c_str());
  ASSERT_EQ(bind(sock, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  close(sock);

  auto st = Copy();
  ASSERT_TRUE(st) << st.error().message();
  auto wh = Lstat("deleted");
  EXPECT_TRUE(S_ISCHR(wh.st_mode));
  EXPECT_EQ(wh.st_rdev, makedev(0, 0));
  EXPECT_FALSE(fs::exists(fs::symlink_status(base_ / "dst/null")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(base_ / "dst/sock")));
  char v[16];
  auto dst = base_ / "dst";
  EXPECT_EQ(getxattr((dst / "opaque").c_str(), "user.overlay.opaque", v, sizeof v), 1);
  EXPECT_EQ(getxattr((dst / "opaque").c_str(), "trusted.overlay.opaque", v, sizeof v), 1);
  EXPECT_LT(getxattr((dst / "opaque").c_str(), "user.overlay.origin", v, sizeof v), 0);
  EXPECT_EQ(getxattr((dst / "opaque/f").c_str(), "user.e2b.tag", v, sizeof v), 2);
}

TEST_F(TreeCopyTest, SkipsTopLevelNamesAndBoundsDepth) {
  Write(".kiln/envd", "stub");
  Write("keep/.kiln", "deeper ones stay");
  TreeCopyOptions options;
  options.skip_top_level = {".kiln"};
  ASSERT_TRUE(Copy(options));
  EXPECT_FALSE(fs::exists(base_ / "dst/.kiln"));
  EXPECT_EQ(Read("keep/.kiln"), "deeper ones stay");

  fs::path deep = "d";
  for (int i = 0; i < 6; ++i) deep /= "d";
  fs::create_directories(base_ / "src" / deep);
  options.max_depth = 4;
  fs::remove_all(base_ / "dst");
  fs::create_directories(base_ / "dst");
  auto st = Copy(options);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kResourceExhausted);
}

}  // namespace
}  // namespace kiln::sys
