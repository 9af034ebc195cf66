#include "kilnd/runtime/vm/qmp.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "kilnd/runtime/vm/child_process.h"
#include "kilnd/runtime/vm/test_support.h"

namespace kiln::kilnd::vm {
namespace {

namespace asio = boost::asio;
using Json = nlohmann::json;
using Socket = QmpClient::Socket;
using std::chrono::milliseconds;
using error_code = boost::system::error_code;

constexpr char kGreeting[] =
    R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}})"
    "\n";

// What the fake QEMU does with each command it reads.
enum class Mode { kNormal, kSilent, kHangUpAfterCapabilities };

Json ReplyFor(const Json& cmd) {
  Json reply = Json::object();
  reply["id"] = cmd["id"];
  std::string name = cmd.value("execute", "");
  if (name == "qmp_capabilities") {
    reply["return"] = Json::object();
  } else if (name == "query-status") {
    reply["return"] = Json::parse(R"({"running": true, "status": "running"})");
  } else if (name == "echo") {
    reply["return"] = cmd.value("arguments", Json());
  } else {
    reply["error"] = Json::parse(R"({"class": "CommandNotFound", "desc": "The command )" + name +
                                 R"( has not been found"})");
  }
  return reply;
}

std::string EventLine(const char* name) {
  Json e = Json::object();
  e["event"] = name;
  e["data"] = Json::object();
  e["timestamp"] = Json::parse(R"({"seconds": 1, "microseconds": 2})");
  return e.dump() + "\n";
}

// A scripted QMP server: greets, then answers each command; before the reply to
// query-status it sends an event, as QEMU may at any time.
asio::awaitable<void> FakeQemu(Socket socket, Mode mode) {
  error_code ec;
  auto redirect = asio::redirect_error(asio::use_awaitable, ec);
  std::string greeting = kGreeting;
  co_await asio::async_write(socket, asio::buffer(greeting), redirect);
  std::string buf;
  for (;;) {
    size_t n = co_await asio::async_read_until(socket, asio::dynamic_buffer(buf), '\n', redirect);
    if (ec) co_return;
    Json cmd = Json::parse(buf.substr(0, n), nullptr, false);
    buf.erase(0, n);
    if (mode == Mode::kSilent && cmd.value("execute", "") != "qmp_capabilities") continue;
    std::string out;
    if (cmd.value("execute", "") == "query-status") out += EventLine("RESUME");
    out += ReplyFor(cmd).dump() + "\n";
    co_await asio::async_write(socket, asio::buffer(out), redirect);
    if (ec) co_return;
    if (mode == Mode::kHangUpAfterCapabilities) co_return;
  }
}

Json FdName(const char* name) {
  Json j = Json::object();
  j["fdname"] = name;
  return j;
}

struct SocketPair {
  Socket client;
  Socket server;
};

SocketPair MakePair(asio::io_context& io) {
  SocketPair p{Socket(io), Socket(io)};
  asio::local::connect_pair(p.client, p.server);
  return p;
}

// Runs `body(client)` after a handshake against FakeQemu(mode).
template <typename Body>
void WithFake(Mode mode, Body body) {
  asio::io_context io;
  SocketPair pair = MakePair(io);
  asio::co_spawn(io, FakeQemu(std::move(pair.server), mode), asio::detached);
  bool done = false;
  auto run = [&]() -> asio::awaitable<void> {
    auto client = co_await QmpClient::Handshake(std::move(pair.client), milliseconds(2000));
    EXPECT_TRUE(client) << client.error().message();
    if (client) co_await body(**client);
    done = true;
  };
  asio::co_spawn(io, run(), asio::detached);
  io.run_for(std::chrono::seconds(10));
  EXPECT_TRUE(done);
}

TEST(QmpClientTest, HandshakeReadsGreeting) {
  WithFake(Mode::kNormal, [](QmpClient& qmp) -> asio::awaitable<void> {
    EXPECT_EQ(qmp.greeting()["version"]["qemu"]["major"], 7);
    co_return;
  });
}

TEST(QmpClientTest, ExecuteReturnsTheReplyAndQueuesEvents) {
  WithFake(Mode::kNormal, [](QmpClient& qmp) -> asio::awaitable<void> {
    auto status = co_await qmp.Execute("query-status", Json(), milliseconds(2000));
    EXPECT_TRUE(status) << status.error().message();
    if (status) {
      EXPECT_EQ((*status)["status"], "running");
    }
    Json args = Json::parse(R"({"x": [1, 2]})");
    auto echo = co_await qmp.Execute("echo", args, milliseconds(2000));
    EXPECT_TRUE(echo);
    if (echo) {
      EXPECT_EQ(*echo, args);
    }
    auto event = co_await qmp.NextEvent(milliseconds(100));
    EXPECT_TRUE(event);
    if (event) {
      EXPECT_EQ((*event)["event"], "RESUME");
    }
    EXPECT_TRUE(qmp.TakeEvents().empty());
  });
}

TEST(QmpClientTest, ErrorReplyCarriesClassAndDescription) {
  WithFake(Mode::kNormal, [](QmpClient& qmp) -> asio::awaitable<void> {
    auto r = co_await qmp.Execute("no-such-command", Json(), milliseconds(2000));
    EXPECT_FALSE(r);
    if (!r) {
      EXPECT_EQ(r.error().code(), Errc::kInternal);
      EXPECT_NE(r.error().message().find("CommandNotFound"), std::string::npos)
          << r.error().message();
    }
  });
}

TEST(QmpClientTest, NoReplyIsATimeout) {
  WithFake(Mode::kSilent, [](QmpClient& qmp) -> asio::awaitable<void> {
    auto r = co_await qmp.Execute("query-status", Json(), milliseconds(100));
    EXPECT_FALSE(r);
    if (!r) {
      EXPECT_EQ(r.error().code(), Errc::kTimeout) << r.error().message();
    }
  });
}

TEST(QmpClientTest, HangUpIsUnavailable) {
  WithFake(Mode::kHangUpAfterCapabilities, [](QmpClient& qmp) -> asio::awaitable<void> {
    auto r = co_await qmp.Execute("query-status", Json(), milliseconds(2000));
    EXPECT_FALSE(r);
    if (!r) {
      EXPECT_EQ(r.error().code(), Errc::kUnavailable) << r.error().message();
    }
  });
}

TEST(QmpClientTest, BadGreetingFailsTheHandshake) {
  asio::io_context io;
  SocketPair pair = MakePair(io);
  std::string junk = "{\"hello\": 1}\n";
  asio::write(pair.server, asio::buffer(junk));
  bool done = false;
  auto run = [&]() -> asio::awaitable<void> {
    auto client = co_await QmpClient::Handshake(std::move(pair.client), milliseconds(1000));
    EXPECT_FALSE(client);
    done = true;
  };
  asio::co_spawn(io, run(), asio::detached);
  io.run_for(std::chrono::seconds(5));
  EXPECT_TRUE(done);
}

// Real QEMU, frozen before it runs anything (-S, no machine): QEMU connects its monitor to
// our listening socket, we query it and make it quit.
TEST(QmpClientTest, TalksToRealQemu) {
  if (access("/usr/bin/qemu-system-x86_64", X_OK) != 0) GTEST_SKIP() << "no QEMU";
  testing::TempDir tmp;
  std::string path = (tmp.path() / "qmp.sock").string();
  asio::io_context io;
  asio::local::stream_protocol::acceptor acceptor(io, asio::local::stream_protocol::endpoint(path));

  sys::SpawnSpec spec;
  spec.path = "/usr/bin/qemu-system-x86_64";
  spec.argv = {spec.path,     "-M",
               "none",        "-S",
               "-nodefaults", "-no-user-config",
               "-display",    "none",
               "-chardev",    "socket,id=qmp0,path=" + path + ",server=off",
               "-mon",        "chardev=qmp0,mode=control"};
  auto qemu = ChildProcess::Start(spec);
  ASSERT_TRUE(qemu) << qemu.error().message();

  bool done = false;
  auto run = [&]() -> asio::awaitable<void> {
    error_code ec;
    Socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_FALSE(ec) << ec.message();
    if (ec) co_return;
    auto qmp = co_await QmpClient::Handshake(std::move(socket), milliseconds(10000));
    EXPECT_TRUE(qmp) << qmp.error().message();
    if (!qmp) co_return;
    auto version = co_await (*qmp)->Execute("query-version", Json(), milliseconds(5000));
    EXPECT_TRUE(version);
    if (version) {
      EXPECT_GE((*version)["qemu"]["major"].get<int>(), 7);
    }
    auto status = co_await (*qmp)->Execute("query-status", Json(), milliseconds(5000));
    EXPECT_TRUE(status);
    if (status) {
      EXPECT_EQ((*status)["status"], "prelaunch");
    }
    // A descriptor handed over with getfd can be closed by name once, then it is gone.
    int p[2];
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    UniqueFd r(p[0]), w(p[1]);
    auto sent = co_await (*qmp)->SendFd("pipe0", r.get(), milliseconds(5000));
    EXPECT_TRUE(sent) << sent.error().message();
    auto closed = co_await (*qmp)->Execute("closefd", FdName("pipe0"), milliseconds(5000));
    EXPECT_TRUE(closed) << closed.error().message();
    auto again = co_await (*qmp)->Execute("closefd", FdName("pipe0"), milliseconds(5000));
    EXPECT_FALSE(again);
    auto quit = co_await (*qmp)->Execute("quit", Json(), milliseconds(5000));
    EXPECT_TRUE(quit) << quit.error().message();
    done = true;
  };
  asio::co_spawn(io, run(), asio::detached);
  io.run_for(std::chrono::seconds(20));
  EXPECT_TRUE(done);
  auto status = qemu->Wait(Clock::now() + std::chrono::seconds(10));
  ASSERT_TRUE(status) << status.error().message();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeWaitStatus(*status);
}

}  // namespace
}  // namespace kiln::kilnd::vm
