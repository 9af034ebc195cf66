#include "kilnd/orchestrator/manager.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include <gtest/gtest.h>
#include "base/encoding.h"
#include "http/server.h"
#include "kilnd/orchestrator/fake_runtime.h"
#include "kilnd/orchestrator/manager_fixture.h"

namespace kiln::kilnd {
namespace {

using fakes::FakeRuntime;
using fakes::Journal;

namespace asio = boost::asio;
using json = nlohmann::json;

// The manager on its own io_context thread, with a fake agent on loopback that records the
// /init bodies and the warm-up commands it gets.
class ManagerTest : public fakes::ManagerFixture {
 protected:
  void SetUp() override {
    MakeDir("manager");
    agent_router_.Add(http::Verb::get, "/health", [](http::Exchange& ex) -> http::Task<void> {
      co_await ex.Respond(http::Response::Empty(204));
    });
    agent_router_.Add(http::Verb::post, "/init", [this](http::Exchange& ex) -> http::Task<void> {
      auto body = co_await ex.ReadBody(1 << 20);
      {
        std::lock_guard l(init_mu_);
        inits_.push_back(body ? *body : "");
        events_.push_back("init");
      }
      co_await ex.Respond(http::Response::Empty(204));
    });
    // The warm-up command: who it runs as.
    agent_router_.Add(http::Verb::post, "/process.Process/Start",
                      [this](http::Exchange& ex) -> http::Task<void> {
      (void)co_await ex.ReadBody(1 << 20);
      {
        std::lock_guard l(init_mu_);
        warm_ups_.emplace_back(ex.request().Header(boost::beast::http::field::authorization));
        events_.push_back("start");
      }
      co_await ex.Respond(http::Response::Empty(200));
    });
    StartAgent();
  }

  void StartManager(int pool_size, std::chrono::milliseconds metrics = std::chrono::milliseconds(50)) {
    OpenStore();
    ManagerOptions o;
    o.envd_binary = "/bin/true";
    o.pool_sizes = {{"base", pool_size}};
    o.metrics_interval = metrics;
    o.pool_min_available_bytes = 0;
    o.runtimes = extra_runtimes_;
    TemplateResolver resolve = [this](std::string_view name) -> Result<TemplateSpec> {
      if (name != "base") return Fail(Errc::kNotFound, "no template");
      TemplateSpec t;
      t.name = "base";
      t.rootfs = "/nonexistent";
      t.runtime = template_runtime_;
      t.env = {{"LANG", "C.UTF-8"}};
      return t;
    };
    ManagerFixture::StartManager(o, resolve);
    StartIoThread();
  }

  size_t Created() {
    std::lock_guard l(journal_->mu);
    return journal_->created.size();
  }

  bool WaitUntil(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Call([&] { return cond(); })) return true;
      std::this_thread::yield();
    }
    return false;
  }

  std::mutex init_mu_;
  std::vector<std::string> inits_;
  std::vector<std::string> warm_ups_;  // their Authorization headers
  std::vector<std::string> events_;    // "init" and "start", in the order the agent saw them
  std::map<std::string, Runtime*> extra_runtimes_;
  std::string template_runtime_;
};

TEST_F(ManagerTest, CreateClaimsFromThePoolAndConfiguresTheAgent) {
  StartManager(2);
  ASSERT_TRUE(WaitUntil([&] { return manager_->pool_ready("base") == 2; }, std::chrono::seconds(10)));
  CreateParams p;
  p.env_vars = {{"A", "1"}};
  p.metadata = {{"k", "v"}};
  p.timeout_s = 60;
  auto row = Run([&]() { return manager_->Create(p); });
  ASSERT_TRUE(row) << row.error().message();
  EXPECT_EQ(row->state, "running");
  EXPECT_EQ(row->metadata.at("k"), "v");
  EXPECT_NEAR(static_cast<double>(row->end_at_ms - row->started_at_ms), 60000.0, 50.0);
  {
    std::lock_guard l(init_mu_);
    // Each pool sandbox got the template's configuration (env, user, workdir), the clock and
    // fresh entropy before its warm-up, no token yet; the claim set one and the sandbox's env
    // (the refill behind the claim may have begun meanwhile).
    ASSERT_GE(inits_.size(), 3u);
    ASSERT_GE(events_.size(), 5u);
    EXPECT_EQ(std::vector<std::string>(events_.begin(), events_.begin() + 4),
              (std::vector<std::string>{"init", "start", "init", "start"}));
    std::vector<json> clocks;
    std::optional<json> claim;
    for (const std::string& body : inits_) {
      json j = json::parse(body);
      if (!j.contains("accessToken")) {
        clocks.push_back(j);
      } else {
        EXPECT_FALSE(claim) << "two inits with a token";
        claim = j;
      }
    }
    ASSERT_TRUE(claim);
    ASSERT_GE(clocks.size(), 2u);
    for (const json& clock : clocks) {
      EXPECT_TRUE(clock.contains("timestamp")) << clock;
      EXPECT_EQ(clock["envVars"], (json{{"LANG", "C.UTF-8"}})) << clock;
      EXPECT_EQ(clock["defaultUser"], "user");
      EXPECT_EQ(clock["defaultWorkdir"], "/home/user");
      auto seed = Base64Decode(clock["entropy"].get<std::string>());
      ASSERT_TRUE(seed);
      EXPECT_EQ(seed->size(), 64u);
    }
    EXPECT_NE(clocks[0]["entropy"], clocks[1]["entropy"]);
    json init = *claim;
    EXPECT_EQ(init["envVars"], (json{{"A", "1"}, {"LANG", "C.UTF-8"}}));
    EXPECT_EQ(init["accessToken"], row->envd_token);
    EXPECT_EQ(init["defaultUser"], "user");
    EXPECT_EQ(init["defaultWorkdir"], "/home/user");
    auto entropy = Base64Decode(init["entropy"].get<std::string>());
    ASSERT_TRUE(entropy);
    EXPECT_EQ(entropy->size(), 64u);
    // Every sandbox ran one warm-up command as the template's user, as the SDK runs commands.
    ASSERT_GE(warm_ups_.size(), 2u);
    for (const std::string& auth : warm_ups_) EXPECT_EQ(auth, "Basic " + Base64Encode("user:"));
  }
  {
    std::lock_guard l(journal_->mu);
    // The claimed sandbox was one of the pool's, not a new one.
    EXPECT_NE(std::find(journal_->created.begin(), journal_->created.end(), row->id),
              journal_->created.end());
  }
  // The pool refills behind the claim.
  EXPECT_TRUE(WaitUntil([&] { return manager_->pool_ready("base") == 2; }, std::chrono::seconds(10)));
  EXPECT_EQ(Created(), 3u);
  auto stored = Call([&] { return store_->GetSandbox(row->id); });
  ASSERT_TRUE(stored && *stored);
  EXPECT_EQ((*stored)->state, "running");
}

TEST_F(ManagerTest, ColdCreateWithoutPoolAndUnknownTemplate) {
  StartManager(0);
  auto row = Run([&]() { return manager_->Create(CreateParams{}); });
  ASSERT_TRUE(row) << row.error().message();
  EXPECT_EQ(Created(), 1u);
  CreateParams bad;
  bad.template_id = "nope";
  auto err = Run([&]() { return manager_->Create(bad); });
  ASSERT_FALSE(err);
  EXPECT_EQ(err.error().code(), Errc::kNotFound);
}

TEST_F(ManagerTest, NoInternetSetsEgressOnAPooledSandbox) {
  StartManager(1);
  ASSERT_TRUE(WaitUntil([&] { return manager_->pool_ready("base") == 1; }, std::chrono::seconds(10)));
  CreateParams p;
  p.allow_internet = false;
  auto row = Run([&]() { return manager_->Create(p); });
  ASSERT_TRUE(row);
  EXPECT_FALSE(row->allow_internet);
  std::lock_guard l(journal_->mu);
  ASSERT_EQ(journal_->egress.size(), 1u);
  EXPECT_FALSE(journal_->egress[0]);
}

TEST_F(ManagerTest, TimeoutKillsAndStoreRecordsWhy) {
  StartManager(0);
  CreateParams p;
  p.timeout_s = 0;
  auto row = Run([&]() { return manager_->Create(p); });
  ASSERT_TRUE(row);
  ASSERT_TRUE(WaitUntil([&] { return !manager_->Get(row->id); }, std::chrono::seconds(2)));
  EXPECT_TRUE(WaitUntil(
      [&] {
        std::lock_guard l(journal_->mu);
        return journal_->killed.size() == 1;
      },
      std::chrono::seconds(2)));
  auto stored = Call([&] { return store_->GetSandbox(row->id); });
  ASSERT_TRUE(stored && *stored);
  EXPECT_EQ((*stored)->state, "killed");
  EXPECT_EQ((*stored)->end_reason, "timeout");
  EXPECT_FALSE(Call([&] { return manager_->RunningInstance(row->id); }));
}

TEST_F(ManagerTest, SetTimeoutAndConnectNeverShortens) {
  StartManager(0);
  CreateParams p;
  p.timeout_s = 100;
  auto row = Run([&]() { return manager_->Create(p); });
  ASSERT_TRUE(row);
  auto connected = Run([&]() { return manager_->Connect(row->id, 10); });
  ASSERT_TRUE(connected);
  EXPECT_FALSE(connected->second);
  EXPECT_EQ(connected->first.end_at_ms, row->end_at_ms);
  auto longer = Run([&]() { return manager_->Connect(row->id, 1000); });
  ASSERT_TRUE(longer);
  EXPECT_GT(longer->first.end_at_ms, row->end_at_ms);
  ASSERT_TRUE(Call([&] { return manager_->SetTimeout(row->id, 5); }));
  auto now = Call([&] { return manager_->Get(row->id); });
  ASSERT_TRUE(now);
  EXPECT_LT(now->end_at_ms, row->end_at_ms);
  EXPECT_EQ(Call([&] { return manager_->SetTimeout("inope", 5); }).error().code(), Errc::kNotFound);
}

TEST_F(ManagerTest, PauseFreezesAndConnectThaws) {
  StartManager(0);
  auto row = Run([&]() { return manager_->Create(CreateParams{}); });
  ASSERT_TRUE(row);
  ASSERT_TRUE(Run([&]() { return manager_->Pause(row->id); }));
  auto again = Run([&]() { return manager_->Pause(row->id); });
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Errc::kFailedPrecondition);
  EXPECT_EQ(Call([&] { return manager_->Get(row->id); })->state, "paused");
  EXPECT_EQ(Call([&] { return manager_->RunningInstance(row->id); }).error().code(), Errc::kNotFound);
  auto resumed = Run([&]() { return manager_->Connect(row->id, 60); });
  ASSERT_TRUE(resumed);
  EXPECT_TRUE(resumed->second);
  EXPECT_EQ(resumed->first.state, "running");
  std::lock_guard l(journal_->mu);
  EXPECT_EQ(journal_->frozen, std::vector<std::string>{row->id});
  EXPECT_EQ(journal_->thawed, std::vector<std::string>{row->id});
  EXPECT_EQ(journal_->created.size(), 1u);  // thawed, not re-created
}

TEST_F(ManagerTest, MetadataOrTemplatePicksTheRuntime) {
  auto vm_journal = std::make_shared<Journal>();
  FakeRuntime vm(vm_journal, "vm", /*keeps_processes=*/true);
  extra_runtimes_ = {{"vm", &vm}};
  StartManager(1);
  ASSERT_TRUE(WaitUntil([&] { return manager_->pool_ready("base") == 1; }, std::chrono::seconds(10)));
  // The pool is the template's default runtime's; a sandbox asking for vm is not taken from it.
  CreateParams p;
  p.metadata = {{kRuntimeMetadataKey, "vm"}};
  auto row = Run([&]() { return manager_->Create(p); });
  ASSERT_TRUE(row) << row.error().message();
  EXPECT_EQ(manager_->pool_ready("base"), 1u);
  {
    std::lock_guard l(vm_journal->mu);
    EXPECT_EQ(vm_journal->created, std::vector<std::string>{row->id});
  }
  // Pausing a runtime whose snapshots keep the processes stops the instance; resuming
  // creates it again from the snapshot.
  ASSERT_TRUE(Run([&]() { return manager_->Pause(row->id); }));
  {
    std::lock_guard l(vm_journal->mu);
    EXPECT_EQ(vm_journal->killed, std::vector<std::string>{row->id});
  }
  auto resumed = Run([&]() { return manager_->Connect(row->id, 60); });
  ASSERT_TRUE(resumed) << resumed.error().message();
  EXPECT_TRUE(resumed->second);
  {
    std::lock_guard l(vm_journal->mu);
    ASSERT_EQ(vm_journal->created.size(), 2u);
    ASSERT_TRUE(vm_journal->files_from[1].has_value());
    EXPECT_TRUE(vm_journal->thawed.empty());
  }
  CreateParams bad;
  bad.metadata = {{kRuntimeMetadataKey, "warp"}};
  auto err = Run([&]() { return manager_->Create(bad); });
  ASSERT_FALSE(err);
  EXPECT_EQ(err.error().code(), Errc::kInvalidArgument);
  EXPECT_NE(err.error().message().find("fake, vm"), std::string::npos) << err.error().message();
  // Explicitly the default runtime by its name.
  CreateParams fake;
  fake.metadata = {{kRuntimeMetadataKey, "fake"}};
  EXPECT_TRUE(Run([&]() { return manager_->Create(fake); }));
  Run([this]() -> http::Task<int> {
    co_await manager_->Shutdown();
    co_return 0;
  });
}

TEST_F(ManagerTest, ConnectWaitsForAPauseThatIsStillStoppingTheSandbox) {
  // A runtime whose pause stops the instance: the sandbox reads "paused" once it is saved,
  // while the stop is still under way. A connect then waits for the stop and resumes.
  auto vm_journal = std::make_shared<Journal>();
  std::promise<void> release;
  vm_journal->kill_gate = release.get_future().share();
  FakeRuntime vm(vm_journal, "vm", /*keeps_processes=*/true);
  extra_runtimes_ = {{"vm", &vm}};
  StartManager(0);
  CreateParams p;
  p.metadata = {{kRuntimeMetadataKey, "vm"}};
  auto row = Run([&]() { return manager_->Create(p); });
  ASSERT_TRUE(row) << row.error().message();
  auto pausing = asio::co_spawn(io_, manager_->Pause(row->id), asio::use_future);
  ASSERT_TRUE(WaitUntil([&] { return vm_journal->kills_waiting.load() == 1; }, std::chrono::seconds(10)));
  auto info = Run([&]() -> http::Task<Result<SandboxRow>> { co_return manager_->Get(row->id); });
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->state, "paused");
  // The connect starts (and reaches its first wait) before the stop may end.
  auto connecting = asio::co_spawn(io_, manager_->Connect(row->id, 60), asio::use_future);
  Run([]() -> http::Task<int> { co_return 0; });
  release.set_value();
  ASSERT_TRUE(pausing.get());
  auto resumed = connecting.get();
  ASSERT_TRUE(resumed) << resumed.error().message();
  EXPECT_TRUE(resumed->second);
  EXPECT_EQ(resumed->first.state, "running");
  Run([this]() -> http::Task<int> {
    co_await manager_->Shutdown();
    co_return 0;
  });
}

TEST_F(ManagerTest, TemplateDefaultRuntimeAlsoFillsThePool) {
  auto vm_journal = std::make_shared<Journal>();
  FakeRuntime vm(vm_journal, "vm", true);
  extra_runtimes_ = {{"vm", &vm}};
  template_runtime_ = "vm";
  StartManager(1);
  ASSERT_TRUE(WaitUntil([&] { return manager_->pool_ready("base") == 1; }, std::chrono::seconds(10)));
  auto row = Run([&]() { return manager_->Create(CreateParams{}); });
  ASSERT_TRUE(row);
  {
    std::lock_guard l(vm_journal->mu);
    EXPECT_NE(std::find(vm_journal->created.begin(), vm_journal->created.end(), row->id),
              vm_journal->created.end());
  }
  EXPECT_EQ(Created(), 0u);  // nothing in the default runtime
  Run([this]() -> http::Task<int> {
    co_await manager_->Shutdown();
    co_return 0;
  });
}

TEST_F(ManagerTest, KillUnknownIsFalseAndKillRemoves) {
  StartManager(0);
  auto row = Run([&]() { return manager_->Create(CreateParams{}); });
  ASSERT_TRUE(row);
  auto k = Run([&]() { return manager_->Kill(row->id); });
  ASSERT_TRUE(k);
  EXPECT_TRUE(*k);
  auto k2 = Run([&]() { return manager_->Kill(row->id); });
  ASSERT_TRUE(k2);
  EXPECT_FALSE(*k2);
  EXPECT_TRUE(Call([&] { return manager_->List(); }).empty());
}

TEST_F(ManagerTest, MetricsAreSampled) {
  StartManager(0, std::chrono::milliseconds(20));
  auto row = Run([&]() { return manager_->Create(CreateParams{}); });
  ASSERT_TRUE(row);
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto m = manager_->Metrics(row->id, 0, INT64_MAX / 2);
        return m && m->size() >= 3;
      },
      std::chrono::seconds(5)));
  auto m = Call([&] { return manager_->Metrics(row->id, 0, INT64_MAX / 2); });
  EXPECT_EQ(m->back().mem_total, 512u << 20);
  auto none = Call([&] { return manager_->Metrics(row->id, 0, 10); });
  EXPECT_TRUE(none->empty());
}

TEST(ManagerRestartTest, RunningBecomeKilledPausedSurvive) {
  auto dir = std::filesystem::temp_directory_path() / ("kiln-restart-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir / "snapshots" / "ipaused");
  {
    auto store = Store::Open(dir / "kiln.db");
    ASSERT_TRUE(store);
    SandboxRow running;
    running.id = "irunning";
    running.template_id = "base";
    running.state = "running";
    ASSERT_TRUE((*store)->PutSandbox(running));
    SandboxRow paused = running;
    paused.id = "ipaused";
    paused.state = "paused";
    paused.snapshot_dir = (dir / "snapshots" / "ipaused").string();
    ASSERT_TRUE((*store)->PutSandbox(paused));
  }
  auto store = Store::Open(dir / "kiln.db");
  ASSERT_TRUE(store);
  auto journal = std::make_shared<Journal>();
  FakeRuntime runtime(journal);
  asio::io_context io;
  ManagerOptions o;
  o.data_dir = dir;
  o.pool_sizes.clear();
  SandboxManager m(io, **store, runtime,
                   [](std::string_view) -> Result<TemplateSpec> { return TemplateSpec{}; }, o);
  ASSERT_TRUE(m.Start());
  EXPECT_FALSE(m.Get("irunning"));
  auto p = m.Get("ipaused");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->state, "paused");
  auto r = (*store)->GetSandbox("irunning");
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->state, "killed");
  EXPECT_EQ((*r)->end_reason, "kilnd restarted");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiln::kilnd
