#include "kilnd/template/template_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "sys/spawn.h"

namespace kiln::kilnd::tmpl {
namespace {

namespace fs = std::filesystem;

Recipe TestRecipe(int version = 1) {
  Recipe r;
  r.name = "base";
  r.version = version;
  r.packages = {"bash"};
  r.env = {{"LANG", "C.UTF-8"}};
  return r;
}

// A store in a temp dir whose builder writes a marker file instead of running debootstrap.
class TemplateStoreTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-store-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    store_dir_ = base_ / "store";
    envd_ = base_ / "kiln-envd";
    std::ofstream(envd_) << "envd";
  }
  void TearDown() override { fs::remove_all(base_); }

  StoreOptions Options(int version = 1) {
    StoreOptions o;
    o.mirror = "http://mirror.example/debian";
    o.recipes = {TestRecipe(version)};
    o.builder = [this](const BuildJob& job) -> Status {
      ++builds_;
      last_job_mirror_ = job.mirror;
      last_parent_rootfs_ = job.parent_rootfs;
      if (record_builder_) {
        // A real child, as debootstrap would be, so the record has a live pid to name.
        sys::SpawnSpec spec;
        spec.path = "/bin/sleep";
        spec.argv = {"sleep", "1000"};
        spec.cwd = "/";
        spec.uid = getuid();
        spec.gid = getgid();
        auto pid = sys::Spawn(spec);
        if (!pid) return Unexpected(pid.error());
        job.on_child(*pid);
        kill(*pid, SIGKILL);
        waitpid(*pid, nullptr, 0);
      }
      fs::create_directories(job.rootfs / "bin");
      std::ofstream(job.rootfs / "bin/marker") << "v" << job.recipe.version;
      if (job.progress) job.progress({"download", "fake", 50});
      if (fail_) return Fail(Errc::kInternal, "debootstrap exited with status 1: E: boom");
      return {};
    };
    return o;
  }
  std::vector<std::string> Entries() {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(store_dir_)) out.push_back(e.path().filename());
    std::ranges::sort(out);
    return out;
  }
  std::string Read(const fs::path& p) {
    std::ifstream in(p);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

  fs::path base_;
  fs::path store_dir_;
  fs::path envd_;
  std::atomic<int> builds_ = 0;
  std::string last_job_mirror_;
  fs::path last_parent_rootfs_;
  bool fail_ = false;
  bool record_builder_ = false;
};

TEST_F(TemplateStoreTest, BuildsOnceThenFindsIt) {
  TemplateStore store(store_dir_, Options());
  EXPECT_EQ(store.Get("base").error().code(), Errc::kNotFound);
  std::vector<BuildProgress> progress;
  auto info =
      store.EnsureBuilt("base", envd_, [&](const BuildProgress& p) { progress.push_back(p); });
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(builds_, 1);
  EXPECT_EQ(last_job_mirror_, "http://mirror.example/debian");
  EXPECT_EQ(info->name, "base");
  EXPECT_EQ(info->rootfs, store_dir_ / "base/rootfs");
  EXPECT_EQ(info->recipe, TestRecipe().Stamp());
  EXPECT_EQ(info->default_user, "user");
  EXPECT_EQ(info->workdir, "/home/user");
  EXPECT_EQ(info->env.at("LANG"), "C.UTF-8");
  EXPECT_EQ(info->created_at.size(), 20u);  // 2025-01-02T03:04:05Z
  EXPECT_EQ(Read(store_dir_ / "base/rootfs/bin/marker"), "v1");
  EXPECT_EQ(Entries(), (std::vector<std::string>{".lock", "base"}));
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().phase, "done");
  EXPECT_EQ(progress.back().percent, 100);

  auto again = store.EnsureBuilt("base", envd_, nullptr);
  ASSERT_TRUE(again);
  EXPECT_EQ(builds_, 1);
  EXPECT_EQ(again->created_at, info->created_at);
  auto list = store.List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name, "base");
}

TEST_F(TemplateStoreTest, TheBuilderRecordIsNotInstalled) {
  record_builder_ = true;
  TemplateStore store(store_dir_, Options());
  auto info = store.EnsureBuilt("base", envd_, nullptr);
  ASSERT_TRUE(info) << info.error().message();
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(store_dir_ / "base")) {
    entries.push_back(e.path().filename());
  }
  std::ranges::sort(entries);
  EXPECT_EQ(entries, (std::vector<std::string>{"rootfs", "template.json"}));
}

TEST_F(TemplateStoreTest, FailedBuildLeavesNothing) {
  fail_ = true;
  TemplateStore store(store_dir_, Options());
  auto info = store.EnsureBuilt("base", envd_, nullptr);
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code(), Errc::kInternal);
  EXPECT_NE(info.error().message().find("build template base: debootstrap exited"),
            std::string::npos)
      << info.error().message();
  EXPECT_EQ(Entries(), std::vector<std::string>{".lock"});
  EXPECT_EQ(store.Get("base").error().code(), Errc::kNotFound);
  EXPECT_TRUE(store.List().empty());
}

TEST_F(TemplateStoreTest, RemainsOfAKilledBuildAreRemoved) {
  fs::create_directories(store_dir_ / ".build-base-Zx81kq/rootfs/usr/bin");
  std::ofstream(store_dir_ / ".build-base-Zx81kq/rootfs/usr/bin/half") << "x";
  fs::create_directories(store_dir_ / ".build-other-000000");
  TemplateStore store(store_dir_, Options());
  ASSERT_TRUE(store.EnsureBuilt("base", envd_, nullptr));
  EXPECT_EQ(Entries(), (std::vector<std::string>{".lock", "base"}));
}

TEST_F(TemplateStoreTest, ANewRecipeVersionReplacesTheTemplate) {
  ASSERT_TRUE(TemplateStore(store_dir_, Options(1)).EnsureBuilt("base", envd_, nullptr));
  TemplateStore v2(store_dir_, Options(2));
  auto outdated = v2.Get("base");
  ASSERT_FALSE(outdated);
  EXPECT_EQ(outdated.error().code(), Errc::kNotFound);
  EXPECT_NE(outdated.error().message().find("older recipe"), std::string::npos);
  EXPECT_TRUE(v2.List().empty());

  auto info = v2.EnsureBuilt("base", envd_, nullptr);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(builds_, 2);
  EXPECT_EQ(info->recipe, TestRecipe(2).Stamp());
  EXPECT_EQ(Read(store_dir_ / "base/rootfs/bin/marker"), "v2");
  EXPECT_EQ(Entries(), (std::vector<std::string>{".lock", "base"}));  // the old tree is gone
}

TEST_F(TemplateStoreTest, AFailedRebuildKeepsTheOldTemplate) {
  ASSERT_TRUE(TemplateStore(store_dir_, Options(1)).EnsureBuilt("base", envd_, nullptr));
  fail_ = true;
  ASSERT_FALSE(TemplateStore(store_dir_, Options(2)).EnsureBuilt("base", envd_, nullptr));
  EXPECT_EQ(Read(store_dir_ / "base/rootfs/bin/marker"), "v1");
  EXPECT_TRUE(TemplateStore(store_dir_, Options(1)).Get("base"));
  EXPECT_EQ(Entries(), (std::vector<std::string>{".lock", "base"}));
}

TEST_F(TemplateStoreTest, UnreadableMetadataMeansRebuild) {
  TemplateStore store(store_dir_, Options());
  ASSERT_TRUE(store.EnsureBuilt("base", envd_, nullptr));
  std::ofstream(store_dir_ / "base/template.json", std::ios::trunc) << "{not json";
  EXPECT_EQ(store.Get("base").error().code(), Errc::kNotFound);
  ASSERT_TRUE(store.EnsureBuilt("base", envd_, nullptr));
  EXPECT_EQ(builds_, 2);
  EXPECT_TRUE(store.Get("base"));
}

TEST_F(TemplateStoreTest, RejectsUnknownRecipesBadNamesAndMissingEnvd) {
  TemplateStore store(store_dir_, Options());
  EXPECT_EQ(store.EnsureBuilt("nope", envd_, nullptr).error().code(), Errc::kNotFound);
  EXPECT_EQ(store.EnsureBuilt("base", base_ / "missing-envd", nullptr).error().code(),
            Errc::kNotFound);
  for (const char* name : {"", "..", ".lock", "a/b", "../etc", "Base", ".build-base-x"}) {
    EXPECT_EQ(store.Get(name).error().code(), Errc::kInvalidArgument) << name;
  }
  EXPECT_EQ(builds_, 0);
}

TEST_F(TemplateStoreTest, ConcurrentCallersBuildOnce) {
  std::mutex mu;
  std::condition_variable cv;
  bool building = false;
  bool second_waiting = false;
  StoreOptions options = Options();
  RootfsBuilder inner = options.builder;
  // The first build holds the lock until the second caller reports that it waits for it.
  options.builder = [&](const BuildJob& job) -> Status {
    std::unique_lock lock(mu);
    building = true;
    cv.notify_all();
    cv.wait_for(lock, std::chrono::seconds(30), [&] { return second_waiting; });
    return inner(job);
  };
  TemplateStore store(store_dir_, options);
  Result<TemplateInfo> first = Fail(Errc::kInternal, "not run");
  Result<TemplateInfo> second = Fail(Errc::kInternal, "not run");
  std::thread a([&] { first = store.EnsureBuilt("base", envd_, nullptr); });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return building; }));
  }
  std::thread b([&] {
    second = store.EnsureBuilt("base", envd_, [&](const BuildProgress& p) {
      if (p.phase != "waiting") return;
      std::lock_guard lock(mu);
      second_waiting = true;
      cv.notify_all();
    });
  });
  a.join();
  b.join();
  ASSERT_TRUE(first) << first.error().message();
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_TRUE(second_waiting);
  EXPECT_EQ(builds_, 1);
  EXPECT_EQ(first->created_at, second->created_at);
}

TEST(RecipeTest, StampChangesWithWhatShapesTheTree) {
  Recipe r = TestRecipe();
  std::string stamp = r.Stamp();
  EXPECT_EQ(stamp, "base v1 bookworm/minbase +bash user=user workdir=/home/user env:LANG=C.UTF-8");
  for (auto change : std::vector<std::function<void(Recipe&)>>{
           [](Recipe& x) { x.version = 2; },
           [](Recipe& x) { x.packages.push_back("git"); },
           [](Recipe& x) { x.suite = "trixie"; },
           [](Recipe& x) { x.variant = "buildd"; },
           [](Recipe& x) { x.default_user = "ubuntu"; },
           [](Recipe& x) { x.env["A"] = "b"; },
       }) {
    Recipe changed = r;
    change(changed);
    EXPECT_NE(changed.Stamp(), stamp);
  }
  Recipe progress_only = r;
  progress_only.expected_debs = 1;
  EXPECT_EQ(progress_only.Stamp(), stamp);
}

Recipe ChildRecipe() {
  Recipe r;
  r.name = "code-interpreter-v1";
  r.parent = "base";
  r.apt_packages = {"python3-ipykernel"};
  r.aliases = {"code-interpreter"};
  r.start_cmd = {"/.kiln/interp", "--port", "49999"};
  r.ready_port = 49999;
  r.ready_path = "/ready";
  return r;
}

// A recipe with a parent builds the parent first, gets its rootfs, answers to its alias and
// keeps its service in the metadata; a change of the parent's recipe makes it stale.
TEST_F(TemplateStoreTest, ChildRecipeBuildsOnItsParent) {
  StoreOptions o = Options();
  o.recipes.push_back(ChildRecipe());
  {
    TemplateStore store(store_dir_, o);
    auto info = store.EnsureBuilt("code-interpreter", envd_, nullptr);
    ASSERT_TRUE(info) << info.error().message();
    EXPECT_EQ(builds_, 2);
    EXPECT_EQ(last_parent_rootfs_, store_dir_ / "base/rootfs");
    EXPECT_EQ(info->name, "code-interpreter-v1");
    EXPECT_EQ(info->start_cmd, ChildRecipe().start_cmd);
    auto again = store.Get("code-interpreter");
    ASSERT_TRUE(again) << again.error().message();
    EXPECT_EQ(again->rootfs, store_dir_ / "code-interpreter-v1/rootfs");
    EXPECT_EQ(again->ready_port, 49999);
    EXPECT_EQ(again->ready_path, "/ready");
    EXPECT_NE(again->recipe.find(TestRecipe().Stamp()), std::string::npos) << again->recipe;
  }
  StoreOptions bumped = Options(2);
  bumped.recipes.push_back(ChildRecipe());
  TemplateStore store(store_dir_, bumped);
  EXPECT_EQ(store.Get("code-interpreter-v1").error().code(), Errc::kNotFound);
  ASSERT_TRUE(store.EnsureBuilt("code-interpreter-v1", envd_, nullptr));
  EXPECT_EQ(builds_, 4);
}

TEST(RecipeTest, BuiltinBase) {
  std::vector<Recipe> recipes = BuiltinRecipes();
  ASSERT_EQ(recipes.size(), 2u);
  EXPECT_EQ(recipes[0].name, "base");
  for (const char* pkg :
       {"bash", "coreutils", "python3", "git", "curl", "sudo", "procps", "ca-certificates"}) {
    EXPECT_NE(std::ranges::find(recipes[0].packages, pkg), recipes[0].packages.end()) << pkg;
  }
}

TEST(RecipeTest, BuiltinCodeInterpreter) {
  std::vector<Recipe> recipes = BuiltinRecipes();
  ASSERT_EQ(recipes.size(), 2u);
  const Recipe& r = recipes[1];
  EXPECT_EQ(r.name, "code-interpreter-v1");
  EXPECT_EQ(r.parent, "base");
  EXPECT_EQ(r.aliases, std::vector<std::string>{"code-interpreter"});
  for (const char* pkg : {"python3-ipykernel", "python3-numpy", "python3-pandas", "python3-matplotlib",
                          "python3-seaborn", "python3-sklearn", "nodejs"}) {
    EXPECT_NE(std::ranges::find(r.apt_packages, pkg), r.apt_packages.end()) << pkg;
  }
  EXPECT_EQ(r.ready_port, 49999);
  EXPECT_NE(r.Stamp(), recipes[0].Stamp());
}

TEST(RecipeTest, TemplateNames) {
  for (const char* ok : {"base", "code-interpreter-v1", "a", "x.y_z", "0abc"}) {
    EXPECT_TRUE(IsValidTemplateName(ok)) << ok;
  }
  for (const char* bad : {"", ".", "..", ".hidden", "-x", "A", "a/b", "a b", "ä"}) {
    EXPECT_FALSE(IsValidTemplateName(bad)) << bad;
  }
  EXPECT_FALSE(IsValidTemplateName(std::string(65, 'a')));
}

TEST(TemplateInfoTest, JsonRoundTrip) {
  TemplateInfo info;
  info.name = "base";
  info.recipe = "base v1";
  info.created_at = "2025-01-02T03:04:05Z";
  info.env = {{"LANG", "C.UTF-8"}, {"X", "\"quoted\"\n"}};
  auto back = ParseTemplateInfo(TemplateInfoToJson(info), "/s/base/rootfs");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->name, "base");
  EXPECT_EQ(back->rootfs, "/s/base/rootfs");
  EXPECT_EQ(back->recipe, "base v1");
  EXPECT_EQ(back->created_at, info.created_at);
  EXPECT_EQ(back->default_user, "user");
  EXPECT_EQ(back->workdir, "/home/user");
  EXPECT_EQ(back->env, info.env);
}

TEST(TemplateInfoTest, RejectsMalformedMetadata) {
  for (const char* text : {"", "[]", "{", "{\"name\":\"base\"}", "{\"name\":1,\"recipe\":\"r\"}",
                           "{\"name\":\"b\",\"recipe\":\"r\",\"env\":[]}",
                           "{\"name\":\"b\",\"recipe\":\"r\",\"env\":{\"A\":1}}",
                           "{\"name\":\"b\",\"recipe\":\"r\",\"workdir\":null}"}) {
    auto info = ParseTemplateInfo(text, "/x");
    ASSERT_FALSE(info) << text;
    EXPECT_EQ(info.error().code(), Errc::kInvalidArgument);
  }
}

}  // namespace
}  // namespace kiln::kilnd::tmpl
