#include "kilnd/proxy/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <gtest/gtest.h>
#include <thread>

#include "kilnd/orchestrator/manager_fixture.h"
#include "kilnd/orchestrator/store.h"

namespace kiln::kilnd {
namespace {

http::RequestHead Head(std::initializer_list<std::pair<const char*, const char*>> headers) {
  http::RequestHead h;
  for (const auto& [k, v] : headers) h.headers.set(k, v);
  return h;
}

TEST(RouteRequestTest, HeadersRouteToTheSandbox) {
  auto r = RouteRequest(Head({{"E2b-Sandbox-Id", "iabc123"}, {"E2b-Sandbox-Port", "49983"}, {"Host", "127.0.0.1:3000"}}));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->sandbox_id, "iabc123");
  EXPECT_EQ((*r)->port, 49983);
}

TEST(RouteRequestTest, BadHeadersAreASandboxRequestWithAnError) {
  for (auto head : {Head({{"E2b-Sandbox-Id", "iabc"}}), Head({{"E2b-Sandbox-Port", "80"}}),
                    Head({{"E2b-Sandbox-Id", "i-abc"}, {"E2b-Sandbox-Port", "80"}}),
                    Head({{"E2b-Sandbox-Id", "IABC"}, {"E2b-Sandbox-Port", "80"}}),
                    Head({{"E2b-Sandbox-Id", "iabc"}, {"E2b-Sandbox-Port", "0"}}),
                    Head({{"E2b-Sandbox-Id", "iabc"}, {"E2b-Sandbox-Port", "65536"}}),
                    Head({{"E2b-Sandbox-Id", "iabc"}, {"E2b-Sandbox-Port", "80x"}}),
                    Head({{"E2b-Sandbox-Id", "iabc"}, {"E2b-Sandbox-Port", "99999999999999"}})}) {
    auto r = RouteRequest(head);
    ASSERT_TRUE(r);
    EXPECT_FALSE(*r);
  }
}

TEST(RouteRequestTest, HostRouting) {
  auto r = RouteRequest(Head({{"Host", "8080-iabc123.kiln.example:3000"}}));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->sandbox_id, "iabc123");
  EXPECT_EQ((*r)->port, 8080);
  // Upstream ignores anything after a second '-' in the label.
  auto extra = RouteRequest(Head({{"Host", "49983-iabc-extra.example"}}));
  ASSERT_TRUE(extra && *extra);
  EXPECT_EQ((*extra)->sandbox_id, "iabc");
}

TEST(RouteRequestTest, EverythingElseIsTheApi) {
  for (const char* host : {"127.0.0.1:3000", "localhost", "api.kiln.example", "my-host.example",
                           "abc-iabc.example", "8080-.example", "8080-UPPER.example", ""}) {
    EXPECT_FALSE(RouteRequest(Head({{"Host", host}}))) << host;
  }
}

namespace asio = boost::asio;
using std::chrono::milliseconds;

// GET `path` on `port` of sandbox `id` through the proxy listening on `proxy_port`. (A
// coroutine's arguments live in its frame; a lambda's captures would not outlive the call.)
http::Task<Result<http::ClientResponse>> GetThroughProxy(uint16_t proxy_port, std::string id,
                                                         uint16_t port, std::string path) {
  auto conn = co_await http::ClientConnection::Connect("127.0.0.1", proxy_port, milliseconds(5000));
  if (!conn) co_return Unexpected(conn.error());
  http::ClientRequest req;
  req.method = http::Verb::get;
  req.target = path;
  req.headers.set("E2b-Sandbox-Id", id);
  req.headers.set("E2b-Sandbox-Port", std::to_string(port));
  co_return co_await conn->Send(std::move(req), milliseconds(20000));
}

// The proxy in front of a manager with fake sandboxes whose "agent" is a server on loopback;
// GET /hang there takes the request and never answers (like a guest that is gone).
class ProxyRelayTest : public fakes::ManagerFixture {
 protected:
  void SetUp() override {
    MakeDir("proxy");
    AddHealthAndInit();
    agent_router_.Add(http::Verb::post, "/process.Process/Start", [](http::Exchange& ex) -> http::Task<void> {
      (void)co_await ex.ReadBody(1 << 20);
      co_await ex.Respond(http::Response::Empty(200));
    });
    agent_router_.Add(http::Verb::get, "/hang", [this](http::Exchange& ex) -> http::Task<void> {
      hung_ = true;
      asio::steady_timer never(io_);
      never.expires_after(std::chrono::hours(1));
      boost::system::error_code ec;
      co_await never.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      co_await ex.Respond(http::Response::Empty(204));
    });
    StartAgent();
    OpenStore();
    journal_->exit_fds = true;
    StartManager(WithoutPool(), BaseTemplate);
    proxy_ = std::make_unique<Proxy>(*manager_);
    server_ = std::make_unique<http::Server>(
        io_,
        [this](http::Exchange& ex) -> http::Task<void> {
          auto target = RouteRequest(ex.request());
          if (!target) co_return (void)co_await ex.Respond(http::Response::Empty(404));
          co_await proxy_->Handle(ex, std::move(*target));
        },
        http::ServerOptions{});
    ASSERT_TRUE(server_->Listen("127.0.0.1", 0));
    server_->Start();
    StartIoThread();
  }

  void TearDown() override {
    StopIo();
    server_.reset();
    proxy_.reset();
    ManagerFixture::TearDown();
  }

  // GET `path` on the agent's port of sandbox `id`, through the proxy.
  Result<http::ClientResponse> Get(const std::string& id, const std::string& path) {
    return asio::co_spawn(io_, GetThroughProxy(server_->port(), id, agent_->port(), path),
                          asio::use_future)
        .get();
  }

  // Kills sandbox `id`; the request behind `reply` must then end with a 502.
  void KillAndExpect502(const std::string& id,
                        std::future<Result<http::ClientResponse>>& reply) {
    auto killed = Run([this, id] { return manager_->Kill(id); });
    ASSERT_TRUE(killed) << killed.error().message();
    auto res = reply.get();
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->status, 502u) << res->body;
  }

  std::unique_ptr<Proxy> proxy_;
  std::unique_ptr<http::Server> server_;
  std::atomic<bool> hung_{false};
};

TEST_F(ProxyRelayTest, ARequestWaitingOnASandboxThatDiesEnds) {
  auto row = Run([this] { return manager_->Create(CreateParams{}); });
  ASSERT_TRUE(row) << row.error().message();
  const std::string id = row->id;
  const uint16_t port = agent_->port();
  const uint16_t proxy_port = server_->port();
  auto t0 = std::chrono::steady_clock::now();
  auto reply = asio::co_spawn(io_, GetThroughProxy(proxy_port, id, port, "/hang"), asio::use_future);
  for (auto until = t0 + std::chrono::seconds(10); !hung_ && std::chrono::steady_clock::now() < until;) {
    std::this_thread::yield();
  }
  if (!hung_) {
    auto early = reply.get();
    FAIL() << "the request did not reach the agent: "
           << (early ? std::to_string(early->status) + " " + early->body : early.error().message());
  }
  // The sandbox dies while the request waits on it (its agent does not notice: no FIN or RST,
  // as with a VM whose QEMU is gone).
  ASSERT_NO_FATAL_FAILURE(KillAndExpect502(id, reply));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST_F(ProxyRelayTest, AnExitWatchThatCannotBeSetUpIsA502ThatSaysWhy) {
  auto row = Run([this] { return manager_->Create(CreateParams{}); });
  ASSERT_TRUE(row) << row.error().message();
  struct Case {
    Errc code;
    std::string_view says;
  };
  for (const Case& c : {Case{Errc::kFailedPrecondition, "The sandbox is not running"},
                        Case{Errc::kResourceExhausted, "The sandbox is not reachable"}}) {
    journal_->exit_fd_error = c.code;
    auto res = Get(row->id, "/health");
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_EQ(res->status, 502u) << res->body;
    EXPECT_NE(res->body.find(c.says), std::string::npos) << ErrcName(c.code) << ": " << res->body;
  }
  journal_->exit_fd_error.reset();
  auto res = Get(row->id, "/health");
  ASSERT_TRUE(res) << res.error().message();
  EXPECT_EQ(res->status, 204u) << res->body;
}

// Sockets to 127.0.0.1:`port` in SYN_SENT (a connect that waits for an answer).
int SynSentTo(uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  int n = 0;
  char want[16];
  std::snprintf(want, sizeof want, "0100007F:%04X", port);
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string slot, local, remote, state;
    if ((ls >> slot >> local >> remote >> state) && remote == want && state == "02") ++n;
  }
  return n;
}

TEST_F(ProxyRelayTest, ASandboxThatDiesWhileTheProxyConnectsEndsTheRequest) {
  // A listener whose accept queue is full drops SYNs: a connect to it waits (as one to a VM
  // whose QEMU is gone does, until the proxy's connect timeout).
  UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener.get(), 0), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const uint16_t full_port = ntohs(addr.sin_port);
  std::vector<UniqueFd> fillers;
  for (int i = 0; i < 8 && SynSentTo(full_port) == 0; ++i) {
    fillers.emplace_back(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    (void)connect(fillers.back().get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
       SynSentTo(full_port) == 0 && std::chrono::steady_clock::now() < until;) {
    std::this_thread::yield();
  }
  const int waiting_before = SynSentTo(full_port);
  ASSERT_GT(waiting_before, 0) << "could not fill the listener's queue";

  auto row = Run([this] { return manager_->Create(CreateParams{}); });
  ASSERT_TRUE(row) << row.error().message();
  const std::string id = row->id;
  const uint16_t proxy_port = server_->port();
  auto reply =
      asio::co_spawn(io_, GetThroughProxy(proxy_port, id, full_port, "/"), asio::use_future);
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
       SynSentTo(full_port) <= waiting_before && std::chrono::steady_clock::now() < until;) {
    std::this_thread::yield();
  }
  ASSERT_GT(SynSentTo(full_port), waiting_before) << "the proxy is not connecting";
  auto t_kill = std::chrono::steady_clock::now();
  ASSERT_NO_FATAL_FAILURE(KillAndExpect502(id, reply));
  // Without the exit watch the connect runs into its 5 s timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - t_kill, std::chrono::seconds(2));
}

}  // namespace
}  // namespace kiln::kilnd
