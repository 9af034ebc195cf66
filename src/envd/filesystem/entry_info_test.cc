#include "envd/filesystem/entry_info.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <string>

namespace kiln::envd {
namespace {

namespace fs = std::filesystem;

TEST(FormatPermissionsTest, RegularFile) {
  EXPECT_EQ(FormatPermissions(S_IFREG | 0644), "-rw-r--r--");
  EXPECT_EQ(FormatPermissions(S_IFREG | 0), "----------");
  EXPECT_EQ(FormatPermissions(S_IFREG | 0777), "-rwxrwxrwx");
}

TEST(FormatPermissionsTest, DirectoryAndSymlink) {
  EXPECT_EQ(FormatPermissions(S_IFDIR | 0755), "drwxr-xr-x");
  EXPECT_EQ(FormatPermissions(S_IFLNK | 0777), "Lrwxrwxrwx");
}

TEST(FormatPermissionsTest, SpecialBitsAreLettersBeforeRwx) {
  // Go's FileMode.String: flags are extra letters, rwx stays as is.
  EXPECT_EQ(FormatPermissions(S_IFREG | S_ISUID | 0755), "urwxr-xr-x");
  EXPECT_EQ(FormatPermissions(S_IFREG | S_ISGID | 0755), "grwxr-xr-x");
  EXPECT_EQ(FormatPermissions(S_IFDIR | S_ISVTX | 0777), "dtrwxrwxrwx");
  EXPECT_EQ(FormatPermissions(S_IFDIR | S_ISGID | 02775), "dgrwxrwxr-x");
  EXPECT_EQ(FormatPermissions(S_IFREG | S_ISUID | S_ISGID | S_ISVTX | 0700), "ugtrwx------");
}

TEST(FormatPermissionsTest, DevicesPipesSockets) {
  EXPECT_EQ(FormatPermissions(S_IFCHR | 0666), "Dcrw-rw-rw-");
  EXPECT_EQ(FormatPermissions(S_IFBLK | 0660), "Drw-rw----");
  EXPECT_EQ(FormatPermissions(S_IFIFO | 0644), "prw-r--r--");
  EXPECT_EQ(FormatPermissions(S_IFSOCK | 0755), "Srwxr-xr-x");
}

TEST(FileTypeNameTest, ProtoEnumNames) {
  EXPECT_EQ(FileTypeName(FileType::kFile), "FILE_TYPE_FILE");
  EXPECT_EQ(FileTypeName(FileType::kDirectory), "FILE_TYPE_DIRECTORY");
  EXPECT_EQ(FileTypeName(FileType::kSymlink), "FILE_TYPE_SYMLINK");
  EXPECT_EQ(FileTypeName(FileType::kUnspecified), "FILE_TYPE_UNSPECIFIED");
}

// A temp dir plus an account root naming the test's own uid and gid.
class EntryInfoTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-entry-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/etc");
    std::ofstream(dir_ + "/etc/passwd")
        << "tester:x:" << getuid() << ":" << getgid() << "::/home/tester:/bin/sh\n";
    std::ofstream(dir_ + "/etc/group") << "testers:x:" << getgid() << ":\n";
    users_ = sys::UserDb(dir_);
    fs::create_directory(dir_ + "/data");
    std::ofstream(dir_ + "/data/file.txt") << "hello";
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result<EntryInfo> Read(const std::string& rel) {
    OwnerNames names(users_);
    return ReadEntryInfo(dir_ + "/" + rel, names);
  }

  std::string dir_;
  sys::UserDb users_;
};

TEST_F(EntryInfoTest, RegularFile) {
  chmod((dir_ + "/data/file.txt").c_str(), 0640);
  auto e = Read("data/file.txt");
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->name, "file.txt");
  EXPECT_EQ(e->type, FileType::kFile);
  EXPECT_EQ(e->path, dir_ + "/data/file.txt");
  EXPECT_EQ(e->size, 5);
  EXPECT_EQ(e->mode, 0640u);
  EXPECT_EQ(e->permissions, "-rw-r-----");
  EXPECT_EQ(e->owner, "tester");
  EXPECT_EQ(e->group, "testers");
  EXPECT_FALSE(e->symlink_target);
}

TEST_F(EntryInfoTest, Directory) {
  chmod((dir_ + "/data").c_str(), 0750);
  auto e = Read("data");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, FileType::kDirectory);
  EXPECT_EQ(e->mode, 0750u);
  EXPECT_EQ(e->permissions, "drwxr-x---");
}

TEST_F(EntryInfoTest, SymlinkReportsTargetTypeAndModeButOwnPermissionsAndSize) {
  chmod((dir_ + "/data/file.txt").c_str(), 0600);
  ASSERT_EQ(symlink("data/file.txt", (dir_ + "/link").c_str()), 0);
  auto e = Read("link");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->name, "link");
  EXPECT_EQ(e->type, FileType::kFile);
  EXPECT_EQ(e->mode, 0600u);
  EXPECT_EQ(e->permissions, "Lrwxrwxrwx");
  EXPECT_EQ(e->size, static_cast<int64_t>(std::string("data/file.txt").size()));
  ASSERT_TRUE(e->symlink_target);
  EXPECT_EQ(*e->symlink_target, fs::canonical(dir_ + "/data/file.txt").string());
}

TEST_F(EntryInfoTest, SymlinkToDirectoryIsDirectory) {
  ASSERT_EQ(symlink((dir_ + "/data").c_str(), (dir_ + "/dlink").c_str()), 0);
  auto e = Read("dlink");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, FileType::kDirectory);
  EXPECT_EQ(*e->symlink_target, fs::canonical(dir_ + "/data").string());
}

TEST_F(EntryInfoTest, DanglingSymlinkIsSymlinkWithAbsoluteTarget) {
  ASSERT_EQ(symlink("../nowhere/x", (dir_ + "/data/dangling").c_str()), 0);
  auto e = Read("data/dangling");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, FileType::kSymlink);
  EXPECT_EQ(e->mode, 0777u);
  ASSERT_TRUE(e->symlink_target);
  EXPECT_EQ(*e->symlink_target, dir_ + "/nowhere/x");
}

TEST_F(EntryInfoTest, MissingIsNotFound) {
  auto e = Read("data/nope");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code(), Errc::kNotFound);
  auto under_file = Read("data/file.txt/x");
  ASSERT_FALSE(under_file);
  EXPECT_EQ(under_file.error().code(), Errc::kNotFound);
}

TEST_F(EntryInfoTest, UnknownOwnerFallsBackToNumbers) {
  sys::UserDb empty(dir_ + "/data");  // no etc/passwd there
  OwnerNames names(empty);
  auto e = ReadEntryInfo(dir_ + "/data/file.txt", names);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->owner, std::to_string(getuid()));
  EXPECT_EQ(e->group, std::to_string(getgid()));
}

TEST_F(EntryInfoTest, MetadataFromUserE2bXattrs) {
  std::string path = dir_ + "/data/file.txt";
  if (setxattr(path.c_str(), "user.e2b.k", "v", 1, 0) != 0) {
    GTEST_SKIP() << "no user xattrs on this file system";
  }
  setxattr(path.c_str(), "user.other", "o", 1, 0);
  auto e = Read("data/file.txt");
  ASSERT_TRUE(e);
  ASSERT_EQ(e->metadata.size(), 1u);
  EXPECT_EQ(e->metadata.at("k"), "v");
  EXPECT_EQ(EntryInfoToJson(*e)["metadata"]["k"], "v");
}

TEST_F(EntryInfoTest, JsonShape) {
  std::string path = dir_ + "/data/file.txt";
  timeval times[2] = {{1700000000, 0}, {1700000000, 123456}};
  ASSERT_EQ(utimes(path.c_str(), times), 0);
  chmod(path.c_str(), 0644);
  auto e = Read("data/file.txt");
  ASSERT_TRUE(e);
  nlohmann::json j = EntryInfoToJson(*e);
  EXPECT_EQ(j["name"], "file.txt");
  EXPECT_EQ(j["type"], "FILE_TYPE_FILE");
  EXPECT_EQ(j["path"], path);
  EXPECT_EQ(j["size"], "5");  // int64 is a JSON string
  EXPECT_EQ(j["mode"], 420);
  EXPECT_EQ(j["permissions"], "-rw-r--r--");
  EXPECT_EQ(j["owner"], "tester");
  EXPECT_EQ(j["group"], "testers");
  EXPECT_EQ(j["modifiedTime"], "2023-11-14T22:13:20.123Z");
  EXPECT_FALSE(j.contains("symlinkTarget"));
  EXPECT_FALSE(j.contains("metadata"));
}

TEST(EntryInfoJsonTest, UnspecifiedTypeIsOmitted) {
  EntryInfo e;
  e.name = "fifo";
  EXPECT_FALSE(EntryInfoToJson(e).contains("type"));
}

TEST_F(EntryInfoTest, FifoHasNoFileType) {
  ASSERT_EQ(mkfifo((dir_ + "/data/pipe").c_str(), 0644), 0);
  auto e = Read("data/pipe");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, FileType::kUnspecified);
  EXPECT_EQ(e->permissions, "prw-r--r--");
}

}  // namespace
}  // namespace kiln::envd
