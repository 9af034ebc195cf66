#pragma once

// Test fixture: a SandboxManager over a fake runtime (fake_runtime.h) and a fake agent, an
// http::Server on loopback at ManagerOptions::agent_port whose routes the test adds, all on one
// io_context run by a thread of the fixture. Test-only (no .cc: nothing of it is linked into
// kilnd). A derived fixture's SetUp calls, in order: MakeDir, (its agent routes),
// StartAgent, OpenStore, StartManager, StartIoThread.

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "http/server.h"
#include "kilnd/orchestrator/fake_runtime.h"
#include "kilnd/orchestrator/manager.h"
#include "kilnd/orchestrator/store.h"

namespace kiln::kilnd::fakes {

class ManagerFixture : public ::testing::Test {
 protected:
  // Runs a coroutine on the io thread and waits for its result.
  template <typename F>
  auto Run(F f) {
    return boost::asio::co_spawn(io_, f(), boost::asio::use_future).get();
  }
  // Calls `f` on the io thread (where the manager lives) and waits for its result.
  template <typename F>
  auto Call(F f) {
    return Run([&]() -> http::Task<decltype(f())> { co_return f(); });
  }

  // A fresh temporary directory for the store and the manager's data.
  void MakeDir(const std::string& tag) {
    dir_ = std::filesystem::temp_directory_path() /
           ("kiln-" + tag + "-test-" + std::to_string(getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::create_directories(dir_);
  }

  // The agent's /health (204) and /init (204, body read and dropped).
  void AddHealthAndInit() {
    agent_router_.Add(http::Verb::get, "/health", [](http::Exchange& ex) -> http::Task<void> {
      co_await ex.Respond(http::Response::Empty(204));
    });
    agent_router_.Add(http::Verb::post, "/init", [](http::Exchange& ex) -> http::Task<void> {
      (void)co_await ex.ReadBody(1 << 20);
      co_await ex.Respond(http::Response::Empty(204));
    });
  }

  void StartAgent() {
    agent_ = std::make_unique<http::Server>(io_, agent_router_, http::ServerOptions{});
    ASSERT_TRUE(agent_->Listen("127.0.0.1", 0));
    agent_->Start();
  }

  void OpenStore() {
    auto store = Store::Open(dir_ / "kiln.db");
    ASSERT_TRUE(store) << store.error().message();
    store_ = std::move(*store);
  }

  // The manager over a fake runtime recording into journal_, with `o`'s data dir and agent
  // port set to the fixture's.
  void StartManager(ManagerOptions o, TemplateResolver resolve) {
    runtime_ = std::make_unique<FakeRuntime>(journal_);
    o.data_dir = dir_;
    o.agent_port = agent_->port();
    manager_ = std::make_unique<SandboxManager>(io_, *store_, *runtime_, std::move(resolve), o);
    ASSERT_TRUE(manager_->Start());
  }

  void StartIoThread() {
    thread_ = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io_);
      io_.run();
    });
  }

  // Shuts the manager down and stops the io thread (once; nothing when it never ran).
  void StopIo() {
    if (!thread_.joinable()) return;
    Run([this]() -> http::Task<int> {
      co_await manager_->Shutdown();
      co_return 0;
    });
    io_.stop();
    thread_.join();
  }

  void TearDown() override {
    StopIo();
    manager_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Default options, without a warm pool.
  static ManagerOptions WithoutPool() {
    ManagerOptions o;
    o.pool_sizes.clear();
    return o;
  }

  // The base template (rootfs /nonexistent, the defaults otherwise); kNotFound for others.
  static Result<TemplateSpec> BaseTemplate(std::string_view name) {
    if (name != "base") return Fail(Errc::kNotFound, "template \"" + std::string(name) + "\" not found");
    TemplateSpec spec;
    spec.name = "base";
    spec.rootfs = "/nonexistent";
    return spec;
  }

  static inline int counter_ = 0;
  std::filesystem::path dir_;
  boost::asio::io_context io_;
  http::Router agent_router_;
  std::unique_ptr<http::Server> agent_;
  std::unique_ptr<Store> store_;
  std::shared_ptr<Journal> journal_ = std::make_shared<Journal>();
  std::unique_ptr<FakeRuntime> runtime_;
  std::unique_ptr<SandboxManager> manager_;
  std::thread thread_;
};

}  // namespace kiln::kilnd::fakes
