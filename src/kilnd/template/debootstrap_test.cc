#include "kilnd/template/debootstrap.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

namespace kiln::kilnd::tmpl {
namespace {

namespace fs = std::filesystem;

// The shape of a real run (trailing blanks included, as debootstrap prints them).
std::vector<std::string> SampleOutput(int debs) {
  std::vector<std::string> lines = {
      "I: Target architecture can be executed",
      "I: Retrieving InRelease ",
      "I: Checking Release signature",
      "I: Valid Release signature (key id 4D64FEC119C2029067D6E791F8D2585B8783D481)",
      "I: Retrieving Packages ",
      "I: Validating Packages ",
      "I: Resolving dependencies of required packages...",
      "I: Resolving dependencies of base packages...",
      "I: Checking component main on http://deb.debian.org/debian...",
  };
  for (int i = 0; i < debs; ++i) {
    lines.push_back("I: Retrieving pkg" + std::to_string(i) + " 1.0-1");
    lines.push_back("I: Validating pkg" + std::to_string(i) + " 1.0-1");
  }
  lines.push_back("I: Chosen extractor for .deb packages: dpkg-deb");
  for (int i = 0; i < debs * 6 / 10; ++i)
    lines.push_back("I: Extracting pkg" + std::to_string(i) + "...");
  lines.push_back("I: Installing core packages...");
  lines.push_back("I: Unpacking required packages...");
  for (int i = 0; i < debs / 2; ++i)
    lines.push_back("I: Unpacking pkg" + std::to_string(i) + "...");
  lines.push_back("I: Configuring required packages...");
  for (int i = 0; i < debs / 2; ++i)
    lines.push_back("I: Configuring pkg" + std::to_string(i) + "...");
  lines.push_back("I: Unpacking the base system...");
  for (int i = debs / 2; i < debs; ++i)
    lines.push_back("I: Unpacking pkg" + std::to_string(i) + "...");
  lines.push_back("I: Configuring the base system...");
  for (int i = debs / 2; i < debs; ++i)
    lines.push_back("I: Configuring pkg" + std::to_string(i) + "...");
  lines.push_back("I: Base system installed successfully.");
  return lines;
}

TEST(DebootstrapProgressTest, WalksThroughPhasesMonotonically) {
  DebootstrapProgress tracker(100, 0, 90);
  int last = 0;
  std::vector<std::string> phases;
  for (const std::string& line : SampleOutput(100)) {
    auto p = tracker.Feed(line);
    ASSERT_TRUE(p) << line;
    EXPECT_GE(p->percent, last) << line;
    EXPECT_LE(p->percent, 90);
    last = p->percent;
    if (phases.empty() || phases.back() != p->phase) phases.push_back(p->phase);
  }
  EXPECT_EQ(last, 90);
  EXPECT_EQ(phases, (std::vector<std::string>{"download", "extract", "unpack", "configure",
                                              "unpack", "configure"}));
}

TEST(DebootstrapProgressTest, PercentagesAtMilestones) {
  DebootstrapProgress tracker(10, 0, 100);
  EXPECT_EQ(tracker.Feed("I: Retrieving InRelease ")->percent, 2);
  auto p = tracker.Feed("I: Retrieving Packages ");
  EXPECT_EQ(p->phase, "download");
  EXPECT_EQ(p->detail, "Retrieving Packages");
  EXPECT_EQ(p->percent, 2);  // an index, not a package
  EXPECT_EQ(tracker.Feed("I: Checking component main on http://x/debian...")->percent, 4);
  for (int i = 0; i < 5; ++i) tracker.Feed("I: Retrieving p" + std::to_string(i) + " 1");
  EXPECT_EQ(tracker.Feed("I: Validating p4 1")->percent, 25);  // 5 of 10 -> 50..450 permille
  for (int i = 0; i < 20; ++i) tracker.Feed("I: Retrieving q" + std::to_string(i) + " 1");
  EXPECT_EQ(tracker.Feed("I: Validating q19 1")->percent, 45);  // capped at the expected count
  EXPECT_EQ(tracker.Feed("I: Installing core packages...")->percent, 55);
  EXPECT_EQ(tracker.Feed("I: Base system installed successfully.")->percent, 100);
}

TEST(DebootstrapProgressTest, WarningsAndErrorsKeepPhaseOtherLinesAreIgnored) {
  DebootstrapProgress tracker(10, 10, 20);
  tracker.Feed("I: Chosen extractor for .deb packages: dpkg-deb");
  auto w = tracker.Feed("W: Failure trying to run: chroot /x mount -t proc proc /proc");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->phase, "extract");
  EXPECT_EQ(w->detail, "W: Failure trying to run: chroot /x mount -t proc proc /proc");
  EXPECT_EQ(w->percent, 14);
  EXPECT_FALSE(tracker.Feed("dpkg: warning: something"));
  EXPECT_FALSE(tracker.Feed(""));
  EXPECT_TRUE(tracker.Feed("E: Couldn't download packages: x"));
  auto unknown = tracker.Feed("I: Something new in a later debootstrap");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->percent, 14);
}

TEST(DebootstrapTest, Argv) {
  DebootstrapArgs args;
  args.packages = {"bash", "git"};
  args.target = "/store/.build-base-x/rootfs";
  args.mirror = "http://deb.debian.org/debian";
  EXPECT_EQ(DebootstrapArgv(args),
            (std::vector<std::string>{
                "/usr/sbin/debootstrap", "--variant=minbase", "--include=bash,git", "bookworm",
                "/store/.build-base-x/rootfs", "http://deb.debian.org/debian"}));
  args.packages.clear();
  EXPECT_EQ(DebootstrapArgv(args).size(), 5u);
}

// Runs fake "debootstrap" scripts: the runner execs whatever `executable` names.
class DebootstrapRunTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-debootstrap-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  DebootstrapArgs Script(const std::string& body) {
    fs::path script = dir_ / "fake-debootstrap";
    std::ofstream(script) << "#!/bin/sh\n" << body;
    chmod(script.c_str(), 0755);
    DebootstrapArgs args;
    args.executable = script.string();
    args.target = dir_ / "target";
    args.mirror = "http://mirror.example/debian";
    return args;
  }

  fs::path dir_;
};

TEST_F(DebootstrapRunTest, ForwardsLinesAndArguments) {
  DebootstrapArgs args = Script(
      "echo \"I: args $*\"\n"
      "echo 'E: on stderr' >&2\n"
      "printf 'I: no newline at the end'\n");
  std::vector<std::string> lines;
  pid_t started = 0;
  auto st = RunDebootstrap(
      args, [&](pid_t pid) { started = pid; }, [&](std::string_view l) { lines.emplace_back(l); });
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_GT(started, 0);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "I: args --variant=minbase bookworm " + (dir_ / "target").string() +
                          " http://mirror.example/debian");
  EXPECT_EQ(lines[1], "E: on stderr");
  EXPECT_EQ(lines[2], "I: no newline at the end");
}

TEST_F(DebootstrapRunTest, FailureQuotesTheLastLines) {
  DebootstrapArgs args = Script(
      "i=0; while [ $i -lt 30 ]; do echo \"I: line $i\"; i=$((i+1)); done\n"
      "echo 'E: Failed getting release file http://mirror.example/debian/dists/bookworm/Release'\n"
      "exit 1\n");
  auto st = RunDebootstrap(args, nullptr, nullptr);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kInternal);
  EXPECT_NE(st.error().message().find("exited with status 1"), std::string::npos);
  EXPECT_NE(st.error().message().find("E: Failed getting release file"), std::string::npos);
  EXPECT_NE(st.error().message().find("I: line 29"), std::string::npos);
  EXPECT_EQ(st.error().message().find("I: line 5 "), std::string::npos);
}

TEST_F(DebootstrapRunTest, DoesNotWaitForLeftoverProcessesAndKillsThem) {
  // A background child keeps the output pipe open after the script exits.
  DebootstrapArgs args = Script(
      "sleep 1000 &\n"
      "echo $! > " +
      (dir_ / "bg.pid").string() +
      "\n"
      "echo 'I: Base system installed successfully.'\n");
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(RunDebootstrap(args, nullptr, nullptr));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  pid_t bg = 0;
  std::ifstream(dir_ / "bg.pid") >> bg;
  ASSERT_GT(bg, 0);
  // Killed with the group; reparented away from us, so poll /proc for it to vanish.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string stat_path = "/proc/" + std::to_string(bg) + "/stat";
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(stat_path);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in || all.find(") Z ") != std::string::npos) break;  // gone or a zombie
    std::this_thread::yield();
  }
  std::ifstream in(stat_path);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(all.empty() || all.find(") Z ") != std::string::npos) << all;
}

TEST_F(DebootstrapRunTest, TimeoutKillsTheGroup) {
  DebootstrapArgs args = Script("echo 'I: Retrieving x 1'\nexec sleep 1000\n");
  args.timeout = std::chrono::seconds(1);
  auto st = RunDebootstrap(args, nullptr, nullptr);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kTimeout);
  EXPECT_NE(st.error().message().find("I: Retrieving x 1"), std::string::npos);
}

TEST_F(DebootstrapRunTest, MissingExecutableIsNotFound) {
  DebootstrapArgs args;
  args.executable = (dir_ / "none").string();
  EXPECT_EQ(RunDebootstrap(args, nullptr, nullptr).error().code(), Errc::kNotFound);
}

}  // namespace
}  // namespace kiln::kilnd::tmpl
