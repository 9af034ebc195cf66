#include "sys/inotify_watch.h"

#include <poll.h>
#include <stdlib.h>
#include <sys/inotify.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <string>
#include <vector>

namespace kiln::sys {
namespace {

namespace fs = std::filesystem;

TEST(WatchOpsForMaskTest, MapsEachInotifyBit) {
  EXPECT_EQ(WatchOpsForMask(IN_CREATE), kWatchCreate);
  EXPECT_EQ(WatchOpsForMask(IN_MOVED_TO), kWatchCreate);
  EXPECT_EQ(WatchOpsForMask(IN_MODIFY), kWatchWrite);
  EXPECT_EQ(WatchOpsForMask(IN_CLOSE_WRITE), kWatchWrite);
  EXPECT_EQ(WatchOpsForMask(IN_DELETE), kWatchRemove);
  EXPECT_EQ(WatchOpsForMask(IN_DELETE_SELF), kWatchRemove);
  EXPECT_EQ(WatchOpsForMask(IN_MOVED_FROM), kWatchRename);
  EXPECT_EQ(WatchOpsForMask(IN_MOVE_SELF), kWatchRename);
  EXPECT_EQ(WatchOpsForMask(IN_ATTRIB), kWatchChmod);
  EXPECT_EQ(WatchOpsForMask(IN_ACCESS | IN_OPEN | IN_CLOSE_NOWRITE), 0u);
  EXPECT_EQ(WatchOpsForMask(IN_CREATE | IN_ISDIR), kWatchCreate);
}

class InotifyWatchTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-inotify-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }

  void WriteFile(const std::string& rel, const std::string& data) {
    std::ofstream(root_ + "/" + rel) << data;
  }

  // Collects events until `done` says enough, or two seconds pass.
  template <typename Done>
  std::vector<WatchEvent> Collect(InotifyWatch& w, Done done) {
    std::vector<WatchEvent> all;
    for (int i = 0; i < 40 && !done(all); ++i) {
      pollfd p{w.fd(), POLLIN, 0};
      poll(&p, 1, 50);
      auto got = w.ReadEvents();
      EXPECT_TRUE(got.has_value());
      if (!got) break;
      all.insert(all.end(), got->begin(), got->end());
    }
    return all;
  }

  static bool Has(const std::vector<WatchEvent>& evs, const std::string& name, uint32_t op) {
    return std::any_of(evs.begin(), evs.end(),
                       [&](const WatchEvent& e) { return e.name == name && (e.ops & op); });
  }

  std::string root_;
};

TEST_F(InotifyWatchTest, OpenMissingIsNotFound) {
  auto w = InotifyWatch::Open(root_ + "/missing", false);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), Errc::kNotFound);
}

TEST_F(InotifyWatchTest, OpenFileIsInvalidArgument) {
  WriteFile("f", "x");
  auto w = InotifyWatch::Open(root_ + "/f", false);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), Errc::kInvalidArgument);
}

TEST_F(InotifyWatchTest, ReportsCreateWriteChmodRenameRemove) {
  auto w = InotifyWatch::Open(root_, false);
  ASSERT_TRUE(w) << w.error().message();
  WriteFile("a.txt", "hello");
  fs::permissions(root_ + "/a.txt", fs::perms::owner_read);
  fs::rename(root_ + "/a.txt", root_ + "/b.txt");
  fs::remove(root_ + "/b.txt");
  auto evs = Collect(*w, [](const auto& e) { return Has(e, "b.txt", kWatchRemove); });
  EXPECT_TRUE(Has(evs, "a.txt", kWatchCreate));
  EXPECT_TRUE(Has(evs, "a.txt", kWatchWrite));
  EXPECT_TRUE(Has(evs, "a.txt", kWatchChmod));
  EXPECT_TRUE(Has(evs, "a.txt", kWatchRename));
  EXPECT_TRUE(Has(evs, "b.txt", kWatchCreate));
  EXPECT_TRUE(Has(evs, "b.txt", kWatchRemove));
}

TEST_F(InotifyWatchTest, NonRecursiveIgnoresNestedChanges) {
  fs::create_directory(root_ + "/sub");
  auto w = InotifyWatch::Open(root_, false);
  ASSERT_TRUE(w);
  WriteFile("sub/inner.txt", "x");
  WriteFile("top.txt", "x");
  auto evs = Collect(*w, [](const auto& e) { return Has(e, "top.txt", kWatchWrite); });
  EXPECT_TRUE(Has(evs, "top.txt", kWatchCreate));
  EXPECT_FALSE(Has(evs, "sub/inner.txt", kWatchCreate));
  EXPECT_EQ(w->watched_dirs(), 1u);
}

TEST_F(InotifyWatchTest, RecursiveWatchesExistingAndNewDirectories) {
  fs::create_directories(root_ + "/old/deep");
  auto w = InotifyWatch::Open(root_, true);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->watched_dirs(), 3u);
  WriteFile("old/deep/a.txt", "x");
  fs::create_directory(root_ + "/new");
  auto evs = Collect(*w, [](const auto& e) { return Has(e, "new", kWatchCreate); });
  WriteFile("new/b.txt", "x");
  auto more = Collect(*w, [](const auto& e) { return Has(e, "new/b.txt", kWatchWrite); });
  EXPECT_TRUE(Has(evs, "old/deep/a.txt", kWatchCreate));
  EXPECT_TRUE(Has(evs, "old/deep/a.txt", kWatchWrite));
  EXPECT_TRUE(Has(more, "new/b.txt", kWatchCreate));
  EXPECT_TRUE(Has(more, "new/b.txt", kWatchWrite));
}

TEST_F(InotifyWatchTest, OpenRootThenContinueSetupInSteps) {
  fs::create_directories(root_ + "/a/b/c");
  fs::create_directories(root_ + "/d");
  auto w = InotifyWatch::OpenRoot(root_, true);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->watched_dirs(), 1u);
  EXPECT_FALSE(w->setup_done());
  int steps = 0;
  while (!w->setup_done()) {
    ASSERT_TRUE(w->ContinueSetup(1));
    ++steps;
  }
  EXPECT_EQ(steps, 4);
  EXPECT_EQ(w->watched_dirs(), 5u);
  WriteFile("a/b/c/f.txt", "x");
  auto evs = Collect(*w, [](const auto& e) { return Has(e, "a/b/c/f.txt", kWatchWrite); });
  EXPECT_TRUE(Has(evs, "a/b/c/f.txt", kWatchCreate));
}

TEST_F(InotifyWatchTest, RecursiveReportsContentsOfDirectoriesCreatedInOneGo) {
  auto w = InotifyWatch::Open(root_, true);
  ASSERT_TRUE(w);
  // Created before the watch on "a" can exist: reported from a scan when "a" shows up.
  fs::create_directories(root_ + "/a/b/c");
  WriteFile("a/b/c/f.txt", "x");
  auto evs = Collect(*w, [](const auto& e) { return Has(e, "a/b/c/f.txt", kWatchCreate); });
  EXPECT_TRUE(Has(evs, "a", kWatchCreate));
  EXPECT_TRUE(Has(evs, "a/b", kWatchCreate));
  EXPECT_TRUE(Has(evs, "a/b/c", kWatchCreate));
  EXPECT_TRUE(Has(evs, "a/b/c/f.txt", kWatchCreate));
  EXPECT_EQ(w->watched_dirs(), 4u);
}

TEST_F(InotifyWatchTest, RecursiveFollowsDirectoryRenamedWithinTree) {
  fs::create_directories(root_ + "/d1/deep");
  auto w = InotifyWatch::Open(root_, true);
  ASSERT_TRUE(w);
  fs::rename(root_ + "/d1", root_ + "/d2");
  auto evs = Collect(*w, [](const auto& e) { return Has(e, "d2", kWatchCreate); });
  EXPECT_TRUE(Has(evs, "d1", kWatchRename));
  WriteFile("d2/deep/x.txt", "x");
  auto more = Collect(*w, [](const auto& e) { return Has(e, "d2/deep/x.txt", kWatchWrite); });
  EXPECT_TRUE(Has(more, "d2/deep/x.txt", kWatchCreate));
  EXPECT_FALSE(Has(more, "d1/deep/x.txt", kWatchCreate));
  EXPECT_EQ(w->watched_dirs(), 3u);
}

TEST_F(InotifyWatchTest, RecursiveDropsDirectoryMovedOutOfTree) {
  fs::create_directories(root_ + "/in/sub");
  fs::create_directory(root_ + "/in/keep");
  char tmpl[] = "/tmp/kiln-inotify-out-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string outside = tmpl;
  auto w = InotifyWatch::Open(root_ + "/in", true);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->watched_dirs(), 3u);
  fs::rename(root_ + "/in/sub", outside + "/sub");
  WriteFile("in/keep/k.txt", "x");  // a later event settles the unmatched move
  auto evs = Collect(*w, [](const auto& e) { return Has(e, "keep/k.txt", kWatchWrite); });
  EXPECT_TRUE(Has(evs, "sub", kWatchRename));
  EXPECT_EQ(w->watched_dirs(), 2u);
  fs::remove_all(outside);
}

TEST_F(InotifyWatchTest, RemovedSubdirectoryIsReportedOnce) {
  fs::create_directory(root_ + "/gone");
  auto w = InotifyWatch::Open(root_, true);
  ASSERT_TRUE(w);
  fs::remove(root_ + "/gone");
  auto evs = Collect(*w, [&](const auto&) { return w->watched_dirs() == 1; });
  auto removes = std::count_if(evs.begin(), evs.end(),
                               [](const WatchEvent& e) { return (e.ops & kWatchRemove) != 0; });
  EXPECT_EQ(removes, 1);
  EXPECT_TRUE(Has(evs, "gone", kWatchRemove));
}

TEST_F(InotifyWatchTest, RootSelfEventsUseDot) {
  auto w = InotifyWatch::Open(root_, false);
  ASSERT_TRUE(w);
  fs::permissions(root_, fs::perms::owner_all);
  auto evs = Collect(*w, [](const auto& e) { return Has(e, ".", kWatchChmod); });
  EXPECT_TRUE(Has(evs, ".", kWatchChmod));
}

TEST_F(InotifyWatchTest, QueueOverflowIsAnError) {
  auto w = InotifyWatch::Open(root_, false);
  ASSERT_TRUE(w);
  auto r = w->Translate(-1, IN_Q_OVERFLOW, "");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kResourceExhausted);
}

TEST_F(InotifyWatchTest, UnknownWatchDescriptorIsIgnored) {
  auto w = InotifyWatch::Open(root_, false);
  ASSERT_TRUE(w);
  auto r = w->Translate(12345, IN_CREATE, "x");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->empty());
}

}  // namespace
}  // namespace kiln::sys
