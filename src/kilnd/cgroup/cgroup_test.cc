#include "kilnd/cgroup/cgroup.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "base/unique_fd.h"
#include "kilnd/cgroup/cgroup_fs.h"

namespace kiln::kilnd::cgroup {
namespace {

using namespace std::chrono_literals;

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// A forked test process that waits for a byte on a pipe before running `body`, so the parent
// can put it into a group first. Killed and reaped on destruction.
class Child {
 public:
  explicit Child(std::function<int()> body) {
    int go[2];
    if (pipe2(go, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      close(go[1]);
      char c;
      if (read(go[0], &c, 1) != 1) _exit(100);
      _exit(body());
    }
    close(go[0]);
    go_.reset(go[1]);
    pidfd_.reset(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  void Go() { ASSERT_EQ(write(go_.get(), "g", 1), 1); }
  // Waits (with a deadline) for the child to exit; returns the waitpid status.
  int Wait(int timeout_ms = 20000) {
    pollfd p{pidfd_.get(), POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return -1;
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    return status;
  }
  bool Exited(int timeout_ms) {
    pollfd p{pidfd_.get(), POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  UniqueFd go_;
  UniqueFd pidfd_;
};

class CgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    auto layout = CgroupBackend::DetectLayout();
    ASSERT_TRUE(layout) << layout.error().message();
    layout_ = *layout;
    parent_ = "kiln-cgtest-" + std::to_string(getpid());
  }
  void TearDown() override {
    if (backend_) {
      auto r = backend_->RemoveLeftovers();
      EXPECT_TRUE(r) << r.error().message();
    }
  }
  void UseBackend(const Layout& layout) {
    auto b = CgroupBackend::ForLayout(layout, parent_);
    ASSERT_TRUE(b) << b.error().message();
    backend_ = std::move(*b);
  }

  Layout layout_;
  std::string parent_;
  std::unique_ptr<CgroupBackend> backend_;
};

TEST(CgroupParseTest, KeyedValues) {
  EXPECT_EQ(internal::KeyedValue("populated 1\nfrozen 0\n", "frozen"), 0u);
  EXPECT_EQ(internal::KeyedValue("populated 1\nfrozen 0\n", "populated"), 1u);
  EXPECT_EQ(internal::KeyedValue("cache 4096\ntotal_cache 8192\n", "cache"), 4096u);
  EXPECT_FALSE(internal::KeyedValue("frozenx 1\n", "frozen"));
  EXPECT_EQ(internal::ParseNumber("123\n"), 123u);
  EXPECT_FALSE(internal::ParseNumber("max\n"));
}

TEST_F(CgroupTest, RejectsBadNames) {
  EXPECT_FALSE(CgroupBackend::ForLayout(layout_, "a/b"));
  EXPECT_FALSE(CgroupBackend::ForLayout(layout_, ".."));
  UseBackend(layout_);
  EXPECT_FALSE(backend_->Create("../x"));
  EXPECT_FALSE(backend_->Create(""));
}

TEST_F(CgroupTest, DetectsThisHost) {
  auto b = CgroupBackend::Detect(parent_);
  ASSERT_TRUE(b) << b.error().message();
  // The development machine is hybrid; a pure v2 host reports "v2".
  EXPECT_EQ((*b)->kind(), layout_.hybrid() ? "hybrid" : "v2");
  EXPECT_FALSE(layout_.unified.empty());
}

TEST_F(CgroupTest, CreateSetsLimitsAndRemoves) {
  UseBackend(layout_);
  auto g = backend_->Create("sb1");
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_EQ(backend_->Create("sb1").error().code(), Errc::kAlreadyExists);
  auto set = (*g)->SetLimits({.memory_bytes = 64 << 20, .pids = 17, .cpu_millis = 500});
  ASSERT_TRUE(set) << set.error().message();
  if (layout_.hybrid()) {
    EXPECT_EQ(ReadFile(layout_.v1_memory / parent_ / "sb1/memory.limit_in_bytes"), "67108864");
    EXPECT_EQ(ReadFile(layout_.v1_pids / parent_ / "sb1/pids.max"), "17");
    EXPECT_EQ(ReadFile(layout_.v1_cpu / parent_ / "sb1/cpu.cfs_quota_us"), "50000");
  } else {
    EXPECT_EQ(ReadFile(layout_.unified / parent_ / "sb1/memory.max"), "67108864");
    EXPECT_EQ(ReadFile(layout_.unified / parent_ / "sb1/pids.max"), "17");
    EXPECT_EQ(ReadFile(layout_.unified / parent_ / "sb1/cpu.max"), "50000 100000");
  }
  auto stats = (*g)->ReadStats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->memory_limit, 64u << 20);
  ASSERT_TRUE((*g)->Kill(1s));
  ASSERT_TRUE((*g)->Remove());
  EXPECT_FALSE(std::filesystem::exists(layout_.unified / parent_ / "sb1"));
  if (layout_.hybrid()) {
    EXPECT_FALSE(std::filesystem::exists(layout_.v1_memory / parent_ / "sb1"));
  }
}

// Runs the freeze / thaw / kill checks against `backend` (v2 semantics in both backends).
void FreezeThawKill(CgroupBackend& backend) {
  auto g = backend.Create("fz");
  ASSERT_TRUE(g) << g.error().message();
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd rd(out[0]), wr(out[1]);
  Child child([w = wr.get()] {
    fcntl(w, F_SETFL, 0);
    fork();  // two writers, so kill has to reach more than one process
    for (;;) {
      if (write(w, "x", 1) != 1) return 1;
      usleep(1000);
    }
  });
  ASSERT_TRUE((*g)->Attach(child.pid()));
  child.Go();
  wr.reset();
  pollfd p{rd.get(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);

  auto frozen = (*g)->Freeze(5s);
  ASSERT_TRUE(frozen) << frozen.error().message();
  char buf[4096];
  while (read(rd.get(), buf, sizeof buf) > 0) {
  }
  EXPECT_EQ(poll(&p, 1, 200), 0) << "a frozen group made progress";

  ASSERT_TRUE((*g)->Thaw());
  EXPECT_EQ(poll(&p, 1, 10000), 1) << "no progress after thaw";

  ASSERT_TRUE((*g)->Freeze(5s));
  auto killed = (*g)->Kill(5s);  // kill works on a frozen group
  ASSERT_TRUE(killed) << killed.error().message();
  int status = child.Wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  auto removed = (*g)->Remove();
  EXPECT_TRUE(removed) << removed.error().message();
}

TEST_F(CgroupTest, FreezeThawKillDetected) {
  UseBackend(layout_);
  FreezeThawKill(*backend_);
}

TEST_F(CgroupTest, FreezeThawKillV2BackendOnUnifiedHierarchy) {
  Layout v2_only;
  v2_only.unified = layout_.unified;
  UseBackend(v2_only);
  EXPECT_EQ(backend_->kind(), "v2");
  FreezeThawKill(*backend_);
}

TEST_F(CgroupTest, V2BackendNamesMissingController) {
  Layout v2_only;
  v2_only.unified = layout_.unified;
  UseBackend(v2_only);
  auto g = backend_->Create("nomem");
  ASSERT_TRUE(g) << g.error().message();
  auto set = (*g)->SetLimits({.memory_bytes = 1 << 20});
  std::string has_memory = ReadFile(layout_.unified / parent_ / "cgroup.subtree_control");
  if (has_memory.find("memory") != std::string::npos) {
    EXPECT_TRUE(set);
  } else {
    ASSERT_FALSE(set);
    EXPECT_NE(set.error().message().find("memory.max"), std::string::npos)
        << set.error().message();
  }
}

TEST_F(CgroupTest, MemoryLimitKillsOnlyTheGroup) {
  UseBackend(layout_);
  auto g = backend_->Create("mem");
  ASSERT_TRUE(g);
  ASSERT_TRUE((*g)->SetLimits({.memory_bytes = 32 << 20}));
  Child bomb([] {
    size_t size = 256 << 20;
    char* p = static_cast<char*>(mmap(nullptr, size, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) return 2;
    for (size_t i = 0; i < size; i += 4096) p[i] = 1;
    return 0;
  });
  ASSERT_TRUE((*g)->Attach(bomb.pid()));
  bomb.Go();
  int status = bomb.Wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
}

TEST_F(CgroupTest, PidsLimitStopsForks) {
  UseBackend(layout_);
  auto g = backend_->Create("pids");
  ASSERT_TRUE(g);
  ASSERT_TRUE((*g)->SetLimits({.pids = 4}));
  Child forker([] {
    int failed = 0;
    for (int i = 0; i < 10; ++i) {
      pid_t p = fork();
      if (p == 0) {
        pause();
        _exit(0);
      }
      if (p < 0) ++failed;
    }
    return failed;
  });
  ASSERT_TRUE((*g)->Attach(forker.pid()));
  forker.Go();
  int status = forker.Wait();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 7);  // 4 = the forker + 3 children
  ASSERT_TRUE((*g)->Kill(5s));  // the paused children
}

TEST_F(CgroupTest, StatsCountCpu) {
  UseBackend(layout_);
  auto g = backend_->Create("cpu");
  ASSERT_TRUE(g);
  Child spinner([] {
    volatile uint64_t x = 0;
    for (uint64_t i = 0; i < 50'000'000; ++i) x = x + i;
    return 0;
  });
  ASSERT_TRUE((*g)->Attach(spinner.pid()));
  spinner.Go();
  spinner.Wait();
  auto stats = (*g)->ReadStats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_GT(stats->cpu_usage_ns, 1'000'000u);
}

TEST_F(CgroupTest, DestructorKillsAndRemoves) {
  UseBackend(layout_);
  auto g = backend_->Create("dtor");
  ASSERT_TRUE(g);
  Child sleeper([] {
    pause();
    return 0;
  });
  ASSERT_TRUE((*g)->Attach(sleeper.pid()));
  sleeper.Go();
  g->reset();
  EXPECT_TRUE(sleeper.Exited(5000));
  EXPECT_FALSE(std::filesystem::exists(layout_.unified / parent_ / "dtor"));
}

TEST_F(CgroupTest, RemoveParentIfEmptyKeepsBusyParents) {
  UseBackend(layout_);
  auto g = backend_->Create("busy");
  ASSERT_TRUE(g);
  backend_->RemoveParentIfEmpty();
  EXPECT_TRUE(std::filesystem::exists(layout_.unified / parent_ / "busy"));
  ASSERT_TRUE((*g)->Kill(1s));
  ASSERT_TRUE((*g)->Remove());
  backend_->RemoveParentIfEmpty();
  EXPECT_FALSE(std::filesystem::exists(layout_.unified / parent_));
  if (layout_.hybrid()) {
    EXPECT_FALSE(std::filesystem::exists(layout_.v1_memory / parent_));
  }
  auto again = backend_->Create("again");  // the parent comes back
  ASSERT_TRUE(again) << again.error().message();
}

TEST_F(CgroupTest, RemoveLeftoversKillsAndRemovesEverything) {
  UseBackend(layout_);
  // What a dead kilnd leaves: groups with processes, made by hand here so no owner exists.
  std::vector<std::filesystem::path> roots = {layout_.unified};
  if (layout_.hybrid()) {
    roots.insert(roots.end(), {layout_.v1_memory, layout_.v1_pids, layout_.v1_cpu});
  }
  std::vector<std::unique_ptr<Child>> children;
  for (std::string name : {"old1", "old2"}) {
    auto c = std::make_unique<Child>([] {
      fork();
      pause();
      return 0;
    });
    for (const auto& root : roots) {
      std::filesystem::create_directories(root / parent_ / name);
      std::ofstream(root / parent_ / name / "cgroup.procs") << c->pid();
    }
    c->Go();
    children.push_back(std::move(c));
  }
  auto r = backend_->RemoveLeftovers();
  ASSERT_TRUE(r) << r.error().message();
  for (auto& c : children) EXPECT_TRUE(c->Exited(5000));
  for (const auto& root : roots) EXPECT_FALSE(std::filesystem::exists(root / parent_));
  backend_.reset();
}

}  // namespace
}  // namespace kiln::kilnd::cgroup
