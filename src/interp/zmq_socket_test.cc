#include "interp/zmq_socket.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <zmq.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <filesystem>

namespace kiln::interp {
namespace {

namespace net = boost::asio;

class ZmqSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-zmq-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Result<ZmqContext> ctx = ZmqContext::Create();
    ASSERT_TRUE(ctx);
    ctx_.emplace(std::move(*ctx));
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::unique_ptr<ZmqSocket> Open(int type) {
    Result<std::unique_ptr<ZmqSocket>> s = ZmqSocket::Open(io_.get_executor(), *ctx_, type);
    EXPECT_TRUE(s);
    return s ? std::move(*s) : nullptr;
  }

  // Runs the io_context until `done` or the deadline.
  bool RunUntil(const bool& done, std::chrono::seconds limit) {
    io_.restart();  // it stops whenever it runs out of work
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done && std::chrono::steady_clock::now() < deadline) {
      if (io_.run_one_until(deadline) == 0 && io_.stopped()) break;
    }
    return done;
  }

  net::io_context io_;
  std::string dir_;
  std::optional<ZmqContext> ctx_;  // destroyed after the sockets of each test
};

http::Task<void> Echo(ZmqSocket* router, int count) {
  for (int handled = 0; handled < count;) {
    Result<std::optional<Frames>> m = router->TryReceive();
    if (m && *m) {
      EXPECT_TRUE(router->Send(**m));
      ++handled;
      continue;
    }
    if (!co_await router->WaitReadable()) co_return;
  }
}

http::Task<void> PingPong(ZmqSocket* dealer, int count, int* received) {
  for (int i = 0; i < count; ++i) {
    std::vector<std::string> frames = {"ping", std::to_string(i)};
    EXPECT_TRUE(dealer->Send(frames));
    for (;;) {
      Result<std::optional<Frames>> m = dealer->TryReceive();
      if (m && *m) {
        EXPECT_EQ(**m, frames);
        ++*received;
        break;
      }
      if (!co_await dealer->WaitReadable()) co_return;
    }
  }
}

// Both ends on one thread: every send processes libzmq commands and may swallow the ZMQ_FD
// edge of the other direction. Without the ZMQ_EVENTS re-checks this hangs quickly.
TEST_F(ZmqSocketTest, PingPongOnOneThreadDoesNotHang) {
  std::unique_ptr<ZmqSocket> router = Open(ZMQ_ROUTER);
  std::unique_ptr<ZmqSocket> dealer = Open(ZMQ_DEALER);
  ASSERT_TRUE(router && dealer);
  std::string endpoint = "ipc://" + dir_ + "/s";
  ASSERT_TRUE(router->Bind(endpoint));
  ASSERT_TRUE(dealer->Connect(endpoint));
  constexpr int kCount = 5000;
  int received = 0;
  bool done = false;
  net::co_spawn(io_, Echo(router.get(), kCount), net::detached);
  net::co_spawn(io_, PingPong(dealer.get(), kCount, &received),
                [&](std::exception_ptr) { done = true; });
  EXPECT_TRUE(RunUntil(done, std::chrono::seconds(30)));
  EXPECT_EQ(received, kCount);
}

http::Task<void> Collect(ZmqSocket* sub, int count, int* received) {
  while (*received < count) {
    Result<std::optional<Frames>> m = sub->TryReceive();
    if (m && *m) {
      if ((**m)[0] == "probe") continue;  // sent before the subscription was seen
      EXPECT_EQ((**m)[0], std::to_string(*received));
      ++*received;
      continue;
    }
    if (!co_await sub->WaitReadable()) co_return;
  }
}

TEST_F(ZmqSocketTest, SubscriberWithoutHighWaterMarkGetsAFlood) {
  std::unique_ptr<ZmqSocket> pub = Open(ZMQ_PUB);
  std::unique_ptr<ZmqSocket> sub = Open(ZMQ_SUB);
  ASSERT_TRUE(pub && sub);
  ASSERT_TRUE(pub->SetOption(ZMQ_SNDHWM, 0));
  ASSERT_TRUE(sub->SetOption(ZMQ_RCVHWM, 0));
  ASSERT_TRUE(sub->SetOption(ZMQ_SUBSCRIBE, std::string_view()));
  std::string endpoint = "ipc://" + dir_ + "/p";
  ASSERT_TRUE(pub->Bind(endpoint));
  ASSERT_TRUE(sub->Connect(endpoint));
  // The subscription must reach the publisher before anything is published: send probes
  // until one arrives.
  bool subscribed = false;
  auto probe = [&]() -> http::Task<void> {
    for (;;) {
      std::vector<std::string> frames = {"probe"};
      EXPECT_TRUE(pub->Send(frames));
      Result<std::optional<Frames>> m = sub->TryReceive();
      if (m && *m) break;
      net::steady_timer t(io_, std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
    subscribed = true;
  };
  net::co_spawn(io_, probe, net::detached);
  ASSERT_TRUE(RunUntil(subscribed, std::chrono::seconds(10)));

  constexpr int kCount = 200000;
  for (int i = 0; i < kCount; ++i) {
    std::vector<std::string> frames = {std::to_string(i)};
    ASSERT_TRUE(pub->Send(frames));
  }
  int received = 0;
  bool done = false;
  net::co_spawn(io_, Collect(sub.get(), kCount, &received),
                [&](std::exception_ptr) { done = true; });
  EXPECT_TRUE(RunUntil(done, std::chrono::seconds(60)));
  EXPECT_EQ(received, kCount);
}

TEST_F(ZmqSocketTest, CloseEndsAPendingWait) {
  std::unique_ptr<ZmqSocket> dealer = Open(ZMQ_DEALER);
  ASSERT_TRUE(dealer);
  ASSERT_TRUE(dealer->Connect("ipc://" + dir_ + "/nobody"));
  std::optional<bool> result;
  net::co_spawn(io_, dealer->WaitReadable(), [&](std::exception_ptr, bool r) { result = r; });
  io_.poll();
  EXPECT_FALSE(result.has_value());
  dealer->Close();
  bool done = false;
  net::co_spawn(io_, [&]() -> http::Task<void> { done = true; co_return; }, net::detached);
  RunUntil(done, std::chrono::seconds(5));
  io_.poll();
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(*result);
  EXPECT_FALSE(dealer->Send(std::vector<std::string>{"x"}));
}

}  // namespace
}  // namespace kiln::interp
