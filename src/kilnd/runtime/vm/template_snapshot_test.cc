#include "kilnd/runtime/vm/template_snapshot.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "kilnd/runtime/vm/file_io.h"
#include "kilnd/runtime/vm/test_support.h"

namespace kiln::kilnd::vm {
namespace {

namespace fs = std::filesystem;

// A complete-looking snapshot directory (its files' content does not matter to pruning).
fs::path MakeSnapshot(const fs::path& root, const std::string& name) {
  fs::path dir = root / name;
  fs::create_directories(dir);
  EXPECT_TRUE(WriteWholeFile(dir / "snapshot.json", "{\"key\":\"" + name + "\"}", 0644));
  EXPECT_TRUE(WriteWholeFile(dir / "ram", std::string(1 << 20, 'x'), 0600));
  return dir;
}

// A paused sandbox's directory whose vm.json names `snapshot`.
fs::path MakePaused(const fs::path& at, const fs::path& snapshot) {
  fs::create_directories(at);
  EXPECT_TRUE(WriteWholeFile(at / kPausedVmInfo,
                             "{\"snapshot\":\"" + snapshot.string() + "\",\"memory_mib\":512}", 0644));
  return at;
}

bool Removed(const PruneReport& r, const fs::path& dir) {
  return std::find(r.removed.begin(), r.removed.end(), dir) != r.removed.end();
}

TEST(PruneTemplateSnapshotsTest, KeepsHeldAndReferencedSnapshotsAndRemovesTheRest) {
  testing::TempDir tmp;
  fs::path root = tmp.path() / "snapshots";
  fs::path held = MakeSnapshot(root, "base-1111111111111111");
  fs::path unused = MakeSnapshot(root, "base-2222222222222222");
  fs::path paused_on = MakeSnapshot(root, "code-interpreter-v1-3333333333333333");
  fs::path stale = MakeSnapshot(root, "base-4444444444444444");
  fs::path moved = MakeSnapshot(root, "base-5555555555555555");
  fs::path interrupted = root / "base-6666666666666666";  // no snapshot.json
  fs::create_directories(interrupted);
  fs::path other = MakeSnapshot(root, "other-7777777777777777");  // a template not pruned here
  const std::vector<std::string> templates = {"base", "code-interpreter-v1"};

  auto hold = HoldTemplateSnapshot(held);
  ASSERT_TRUE(hold) << hold.error().message();
  // A paused sandbox on `paused_on`; one on `stale` whose pause directory is gone; one whose
  // vm.json now names another snapshot (it was resumed and paused again after a rebuild).
  ASSERT_TRUE(AddTemplateSnapshotRef(paused_on, MakePaused(tmp.path() / "data/snapshots/ia", paused_on)));
  ASSERT_TRUE(AddTemplateSnapshotRef(stale, tmp.path() / "data/snapshots/ib"));
  ASSERT_TRUE(AddTemplateSnapshotRef(moved, MakePaused(tmp.path() / "data/snapshots/ic", held)));

  auto pruned = PruneTemplateSnapshots(root, templates);
  ASSERT_TRUE(pruned) << pruned.error().message();
  EXPECT_EQ(pruned->removed.size(), 4u);
  EXPECT_TRUE(Removed(*pruned, unused));
  EXPECT_TRUE(Removed(*pruned, stale));
  EXPECT_TRUE(Removed(*pruned, moved));
  EXPECT_TRUE(Removed(*pruned, interrupted));
  EXPECT_GE(pruned->bytes, 3u << 20);  // three 1 MiB RAM files
  EXPECT_TRUE(fs::exists(held / "ram"));
  EXPECT_TRUE(fs::exists(paused_on / "ram"));
  EXPECT_TRUE(fs::exists(root / ".lock"));
  EXPECT_TRUE(fs::exists(other / "ram"));
  for (const fs::path& d : {unused, stale, moved, interrupted}) EXPECT_FALSE(fs::exists(d)) << d;

  // Once nothing holds or needs them, they go too.
  hold->reset();
  fs::remove_all(tmp.path() / "data/snapshots/ia");
  auto again = PruneTemplateSnapshots(root, templates);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->removed.size(), 2u);
  EXPECT_FALSE(fs::exists(held));
  EXPECT_FALSE(fs::exists(paused_on));
  EXPECT_TRUE(fs::exists(other));
}

TEST(PruneTemplateSnapshotsTest, ANewRefToTheSamePauseDirReplacesTheOld) {
  testing::TempDir tmp;
  fs::path snap = MakeSnapshot(tmp.path(), "base-1111111111111111");
  fs::path paused = MakePaused(tmp.path() / "p", snap);
  ASSERT_TRUE(AddTemplateSnapshotRef(snap, paused));
  ASSERT_TRUE(AddTemplateSnapshotRef(snap, tmp.path() / "x/../p"));  // the same directory
  size_t refs = 0;
  for (const auto& e : fs::directory_iterator(snap / "refs")) {
    (void)e;
    ++refs;
  }
  EXPECT_EQ(refs, 1u);
}

TEST(PruneTemplateSnapshotsTest, NoRootIsNothingToDoAndHoldNeedsACompleteSnapshot) {
  testing::TempDir tmp;
  auto pruned = PruneTemplateSnapshots(tmp.path() / "none", {"base"});
  ASSERT_TRUE(pruned) << pruned.error().message();
  EXPECT_TRUE(pruned->removed.empty());
  fs::create_directories(tmp.path() / "half");
  auto hold = HoldTemplateSnapshot(tmp.path() / "half");
  ASSERT_FALSE(hold);
  EXPECT_EQ(hold.error().code(), Errc::kNotFound);
}

TEST(PausedVmInfoTest, RoundTripsAndRejectsWhatIsNotOne) {
  testing::TempDir tmp;
  ASSERT_TRUE(WritePausedVmInfo(tmp.path(), PausedVmInfo{"/var/cache/kiln/vm/snapshots/base-1", 768}));
  auto info = ReadPausedVmInfo(tmp.path());
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->snapshot, "/var/cache/kiln/vm/snapshots/base-1");
  EXPECT_EQ(info->memory_mib, 768u);

  auto none = ReadPausedVmInfo(tmp.path() / "nothing");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), Errc::kNotFound);
  for (const char* bad : {"", "[]", "{\"snapshot\":1}", "{\"snapshot\":\"\"}", "{\"memory_mib\":512}",
                          "{\"snapshot\":\"/s\",\"memory_mib\":-1}",
                          "{\"snapshot\":\"/s\",\"memory_mib\":\"512\"}",
                          "{\"snapshot\":\"/s\",\"memory_mib\":99999999999}"}) {
    ASSERT_TRUE(WriteWholeFile(tmp.path() / kPausedVmInfo, bad, 0644));
    auto r = ReadPausedVmInfo(tmp.path());
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Errc::kInvalidArgument) << bad;
  }
  // memory_mib is optional (0: not recorded).
  ASSERT_TRUE(WriteWholeFile(tmp.path() / kPausedVmInfo, "{\"snapshot\":\"/s\"}", 0644));
  auto bare = ReadPausedVmInfo(tmp.path());
  ASSERT_TRUE(bare) << bare.error().message();
  EXPECT_EQ(bare->memory_mib, 0u);
}

TEST(SnapshotTemplateNameTest, CutsTheKeyHash) {
  EXPECT_EQ(SnapshotTemplateName("base-796cfb64870ab027"), "base");
  EXPECT_EQ(SnapshotTemplateName("code-interpreter-v1-3aaeb9041ec57949"), "code-interpreter-v1");
  EXPECT_EQ(SnapshotTemplateName("-796cfb64870ab027"), std::nullopt);  // no template name
  EXPECT_EQ(SnapshotTemplateName("base-796cfb64870ab02"), std::nullopt);
  EXPECT_EQ(SnapshotTemplateName("base_796cfb64870ab027"), std::nullopt);
  EXPECT_EQ(SnapshotTemplateName("base-796cfb64870ab02g"), std::nullopt);
  EXPECT_EQ(SnapshotTemplateName(".lock"), std::nullopt);
}

}  // namespace
}  // namespace kiln::kilnd::vm
