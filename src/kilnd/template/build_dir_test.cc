#include "kilnd/template/build_dir.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "sys/spawn.h"

namespace kiln::kilnd::tmpl {
namespace {

namespace fs = std::filesystem;

class BuildDirTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-builddir-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    base_ = tmpl;
  }
  void TearDown() override { fs::remove_all(base_); }

  void MakeTree(const fs::path& dir) {
    fs::create_directories(dir / "a/b/c");
    std::ofstream(dir / "a/b/c/file") << "x";
    std::ofstream(dir / "top") << "y";
    fs::create_symlink("a/b", dir / "link");
  }

  fs::path base_;
};

// A child process `sleep 1000` in its own process group; killed and reaped at scope exit.
class Sleeper {
 public:
  Sleeper() {
    sys::SpawnSpec spec;
    spec.path = "/bin/sleep";
    spec.argv = {"sleep", "1000"};
    spec.cwd = "/";
    spec.uid = getuid();
    spec.gid = getgid();
    auto pid = sys::Spawn(spec);
    pid_ = pid ? *pid : -1;
  }
  ~Sleeper() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      Wait();
    }
  }
  pid_t pid() const { return pid_; }
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  bool Running() const {
    siginfo_t info{};
    return waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0;
  }

 private:
  pid_t pid_;
};

TEST_F(BuildDirTest, RemoveTreeDeletesEverything) {
  MakeTree(base_ / "t");
  ASSERT_TRUE(RemoveTree(base_ / "t"));
  EXPECT_FALSE(fs::exists(base_ / "t"));
  EXPECT_TRUE(RemoveTree(base_ / "t"));  // already gone
  EXPECT_TRUE(RemoveTree(base_ / "no/parent"));
}

TEST_F(BuildDirTest, RemoveTreeDoesNotFollowSymlinks) {
  MakeTree(base_ / "outside");
  fs::create_directories(base_ / "t");
  fs::create_directory_symlink(base_ / "outside", base_ / "t/escape");
  fs::create_directory_symlink(base_ / "outside", base_ / "dirlink");
  ASSERT_TRUE(RemoveTree(base_ / "t"));
  ASSERT_TRUE(RemoveTree(base_ / "dirlink"));
  EXPECT_FALSE(fs::exists(base_ / "t"));
  EXPECT_FALSE(fs::is_symlink(base_ / "dirlink"));
  EXPECT_TRUE(fs::exists(base_ / "outside/a/b/c/file"));
}

TEST_F(BuildDirTest, RemoveTreeRefusesRoot) {
  EXPECT_EQ(RemoveTree("/").error().code(), Errc::kInvalidArgument);
}

TEST_F(BuildDirTest, RemoveTreeDetachesMountsInside) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (mount)";
  MakeTree(base_ / "t");
  fs::create_directories(base_ / "t/proc");
  fs::create_directories(base_ / "t/dev");
  // The mounts live in a mount namespace private to this thread; it goes away with the thread,
  // so nothing leaks even if an assertion fails.
  Status result;
  bool mounted = false;
  std::thread([&] {
    if (unshare(CLONE_NEWNS) != 0) return;
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return;
    std::string proc = (base_ / "t/proc").string();
    std::string dev = (base_ / "t/dev").string();
    if (mount("tmpfs", proc.c_str(), "tmpfs", 0, "size=1m") != 0) return;
    if (mount("tmpfs", dev.c_str(), "tmpfs", 0, "size=1m") != 0) return;
    std::ofstream(base_ / "t/dev/on-tmpfs") << "z";
    if (mount("tmpfs", dev.c_str(), "tmpfs", 0, "size=1m") != 0) return;  // stacked
    mounted = true;
    result = RemoveTree(base_ / "t");
  }).join();
  ASSERT_TRUE(mounted);
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_FALSE(fs::exists(base_ / "t"));
}

TEST_F(BuildDirTest, OwnerRemovesUnlessReleased) {
  fs::path kept;
  {
    auto dir = BuildDir::Create(base_, "base");
    ASSERT_TRUE(dir) << dir.error().message();
    EXPECT_TRUE(dir->path().filename().string().starts_with(".build-base-"));
    MakeTree(dir->path() / "rootfs");
    auto other = BuildDir::Create(base_, "base");
    ASSERT_TRUE(other);
    kept = other->path();
    other->Release();
  }
  std::vector<fs::path> left;
  for (const auto& e : fs::directory_iterator(base_)) left.push_back(e.path());
  EXPECT_EQ(left, std::vector<fs::path>{kept});
}

TEST_F(BuildDirTest, StaleDirsAreRemovedAndTheirBuilderKilled) {
  Sleeper builder;
  ASSERT_GT(builder.pid(), 0);
  {
    auto dir = BuildDir::Create(base_, "base");
    ASSERT_TRUE(dir);
    MakeTree(dir->path() / "rootfs");
    ASSERT_TRUE(dir->RecordBuilder(builder.pid()));
    dir->Release();  // as if this process had been killed mid-build
  }
  std::ofstream(base_ / "not-a-build") << "keep";
  RemoveStaleBuildDirs(base_);
  int status = builder.Wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  std::vector<fs::path> left;
  for (const auto& e : fs::directory_iterator(base_)) left.push_back(e.path().filename());
  EXPECT_EQ(left, std::vector<fs::path>{"not-a-build"});
}

TEST_F(BuildDirTest, ARecordedPidWithAnotherStartTimeIsNotKilled) {
  Sleeper unrelated;
  ASSERT_GT(unrelated.pid(), 0);
  fs::create_directories(base_ / ".build-base-abcdef");
  // Same pid, different process (as after pid reuse).
  std::ofstream(base_ / ".build-base-abcdef/.builder") << unrelated.pid() << " 1\n";
  RemoveStaleBuildDirs(base_);
  EXPECT_FALSE(fs::exists(base_ / ".build-base-abcdef"));
  EXPECT_TRUE(unrelated.Running());
}

}  // namespace
}  // namespace kiln::kilnd::tmpl
