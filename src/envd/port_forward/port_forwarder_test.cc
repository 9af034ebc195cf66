#include "envd/port_forward/port_forwarder.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <gtest/gtest.h>
#include <optional>
#include <string>
#include <thread>

#include "base/unique_fd.h"

namespace kiln::envd::port_forward {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kDeadline = 10s;

// Moves the calling thread into a new network namespace with `lo` up, and back on destruction:
// the forwarder then sees only this test's sockets in /proc/thread-self/net/tcp. Threads
// started meanwhile inherit the namespace.
class TestNetns {
 public:
  static std::optional<TestNetns> Enter(std::string& error) {
    UniqueFd original(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!original) {
      error = std::string("open own netns: ") + std::strerror(errno);
      return std::nullopt;
    }
    if (::unshare(CLONE_NEWNET) != 0) {
      error = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return std::nullopt;
    }
    TestNetns ns(std::move(original));
    UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (!sock || ::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) != 0) {
      error = std::string("get lo flags: ") + std::strerror(errno);
      return std::nullopt;
    }
    ifr.ifr_flags |= IFF_UP;
    if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) != 0) {
      error = std::string("set lo up: ") + std::strerror(errno);
      return std::nullopt;
    }
    return ns;
  }
  TestNetns(TestNetns&& o) noexcept = default;
  ~TestNetns() {
    if (original_ && ::setns(original_.get(), CLONE_NEWNET) != 0) std::abort();
  }

 private:
  explicit TestNetns(UniqueFd original) : original_(std::move(original)) {}
  UniqueFd original_;
};

sockaddr_storage Addr(const char* ip, uint16_t port, socklen_t& len) {
  sockaddr_storage ss{};
  if (std::strchr(ip, ':') != nullptr) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    ::inet_pton(AF_INET6, ip, &a->sin6_addr);
    len = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    ::inet_pton(AF_INET, ip, &a->sin_addr);
    len = sizeof(sockaddr_in);
  }
  return ss;
}

// A listening socket on ip:port (0: any free port); `port` gets the bound port.
UniqueFd Listen(const char* ip, uint16_t& port) {
  socklen_t len = 0;
  sockaddr_storage ss = Addr(ip, port, len);
  UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return {};
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return {};
  if (::listen(fd.get(), 16) != 0) return {};
  len = sizeof(ss);
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                  : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return fd;
}

// One connect attempt (loopback answers at once); `err` is the errno on failure.
UniqueFd Connect(const char* ip, uint16_t port, int& err) {
  socklen_t len = 0;
  sockaddr_storage ss = Addr(ip, port, len);
  UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{2, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    err = errno;
    return {};
  }
  err = 0;
  return fd;
}

// Polls `done` (connect attempts, counters) until it holds or the deadline passes.
bool WaitFor(const std::function<bool()>& done) {
  auto until = Clock::now() + kDeadline;
  while (Clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(5ms);  // pause between polls, not a synchronisation
  }
  return done();
}

bool Readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

UniqueFd Accept(int listener) {
  if (!Readable(listener, std::chrono::duration_cast<std::chrono::milliseconds>(kDeadline))) {
    return {};
  }
  return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads until EOF; nullopt on error or deadline.
std::optional<std::string> ReadToEof(int fd) {
  std::string out;
  auto until = Clock::now() + kDeadline;
  char buf[16384];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (left <= 0ms || !Readable(fd, left)) return std::nullopt;
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) return std::nullopt;
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

class PortForwarderTest : public testing::Test {
 protected:
  static constexpr const char* kForward = "127.0.0.2";

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for a private network namespace";
    std::string error;
    std::optional<TestNetns> ns = TestNetns::Enter(error);
    if (!ns) GTEST_SKIP() << error;
    netns_.emplace(std::move(*ns));
  }

  void TearDown() override {
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
    forwarder_.reset();
    netns_.reset();
  }

  void StartForwarder(PortForwarderOptions options = {}) {
    options.forward_address = boost::asio::ip::make_address(kForward);
    options.scan_interval = 20ms;
    forwarder_ = std::make_unique<PortForwarder>(io_, std::move(options));
    forwarder_->Start();
    thread_ = std::thread([this] { io_.run(); });
  }

  bool Forwarded(uint16_t port) const {
    auto ports = forwarder_->ForwardedPorts();
    return std::find(ports.begin(), ports.end(), port) != ports.end();
  }

  // Waits until connecting to kForward:port succeeds (the forwarder listens there).
  UniqueFd ConnectForwarded(uint16_t port) {
    UniqueFd fd;
    WaitFor([&] {
      int err = 0;
      fd = Connect(kForward, port, err);
      return static_cast<bool>(fd);
    });
    return fd;
  }

  // Waits for `n` more complete scans.
  bool WaitScans(uint64_t n) {
    uint64_t target = forwarder_->scans() + n;
    return WaitFor([&] { return forwarder_->scans() >= target; });
  }

  std::optional<TestNetns> netns_;
  boost::asio::io_context io_{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{
      io_.get_executor()};
  std::unique_ptr<PortForwarder> forwarder_;
  std::thread thread_;
};

TEST_F(PortForwarderTest, RelaysBothWaysWithHalfCloseAndStopsWithTheListener) {
  uint16_t port = 0;
  UniqueFd server = Listen("127.0.0.1", port);
  ASSERT_TRUE(server);
  StartForwarder();

  UniqueFd client = ConnectForwarded(port);
  ASSERT_TRUE(client) << "127.0.0.2:" << port << " never accepted";
  EXPECT_TRUE(Forwarded(port));
  UniqueFd conn = Accept(server.get());
  ASSERT_TRUE(conn) << "the relay never reached the loopback server";

  // Client -> server, then the client's half-close reaches the server as EOF.
  std::string request(100000, 'q');
  ASSERT_TRUE(WriteAll(client.get(), request));
  ASSERT_EQ(::shutdown(client.get(), SHUT_WR), 0);
  std::optional<std::string> got = ReadToEof(conn.get());
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, request);

  // The other direction still works after the half-close; the server's close ends it.
  std::string reply(300000, 'r');
  reply += "end";
  ASSERT_TRUE(WriteAll(conn.get(), reply));
  conn.reset();
  std::optional<std::string> back = ReadToEof(client.get());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, reply);
  client.reset();

  // The loopback listener goes away: so does the forward.
  server.reset();
  EXPECT_TRUE(WaitFor([&] {
    int err = 0;
    UniqueFd fd = Connect(kForward, port, err);
    return !fd && err == ECONNREFUSED;
  })) << "127.0.0.2:" << port << " still accepts";
  EXPECT_FALSE(Forwarded(port));
}

TEST_F(PortForwarderTest, ListenerReturningIsForwardedAgain) {
  uint16_t port = 0;
  UniqueFd server = Listen("127.0.0.1", port);
  ASSERT_TRUE(server);
  StartForwarder();
  ASSERT_TRUE(WaitFor([&] { return Forwarded(port); }));
  server.reset();
  ASSERT_TRUE(WaitFor([&] { return !Forwarded(port); }));
  server = Listen("127.0.0.1", port);
  ASSERT_TRUE(server);
  UniqueFd client = ConnectForwarded(port);
  ASSERT_TRUE(client);
  UniqueFd conn = Accept(server.get());
  ASSERT_TRUE(conn);
  ASSERT_TRUE(WriteAll(conn.get(), "hello"));
  conn.reset();
  EXPECT_EQ(ReadToEof(client.get()), std::optional<std::string>("hello"));
}

TEST_F(PortForwarderTest, AnyAddressAndExcludedPortsAreNotForwarded) {
  uint16_t any_port = 0;
  UniqueFd any = Listen("0.0.0.0", any_port);
  ASSERT_TRUE(any);
  uint16_t excluded_port = 0;
  UniqueFd excluded = Listen("127.0.0.1", excluded_port);
  ASSERT_TRUE(excluded);
  uint16_t marker_port = 0;
  UniqueFd marker = Listen("127.0.0.1", marker_port);
  ASSERT_TRUE(marker);

  PortForwarderOptions options;
  options.excluded_ports = {excluded_port};
  StartForwarder(std::move(options));
  ASSERT_TRUE(WaitFor([&] { return Forwarded(marker_port); }));
  ASSERT_TRUE(WaitScans(3));
  EXPECT_EQ(forwarder_->ForwardedPorts(), std::vector<uint16_t>{marker_port});

  // 127.0.0.2:<any_port> reaches the 0.0.0.0 server directly; the excluded port is closed.
  int err = 0;
  UniqueFd direct = Connect(kForward, any_port, err);
  ASSERT_TRUE(direct) << std::strerror(err);
  UniqueFd conn = Accept(any.get());
  EXPECT_TRUE(conn);
  UniqueFd refused = Connect(kForward, excluded_port, err);
  EXPECT_FALSE(refused);
  EXPECT_EQ(err, ECONNREFUSED);
}

TEST_F(PortForwarderTest, IPv6LoopbackListenerIsForwarded) {
  uint16_t port = 0;
  UniqueFd server = Listen("::1", port);
  if (!server) GTEST_SKIP() << "no IPv6 loopback here";
  StartForwarder();
  UniqueFd client = ConnectForwarded(port);
  ASSERT_TRUE(client);
  UniqueFd conn = Accept(server.get());
  ASSERT_TRUE(conn);
  ASSERT_TRUE(WriteAll(client.get(), "six"));
  ::shutdown(client.get(), SHUT_WR);
  EXPECT_EQ(ReadToEof(conn.get()), std::optional<std::string>("six"));
}

TEST_F(PortForwarderTest, RelayLimitHoldsNewConnectionsUntilOneEnds) {
  uint16_t port = 0;
  UniqueFd server = Listen("127.0.0.1", port);
  ASSERT_TRUE(server);
  PortForwarderOptions options;
  options.max_relays_per_port = 1;
  StartForwarder(std::move(options));

  UniqueFd first = ConnectForwarded(port);
  ASSERT_TRUE(first);
  UniqueFd first_conn = Accept(server.get());
  ASSERT_TRUE(first_conn);

  // The second connection waits in the forwarder's backlog while the first relay lives.
  int err = 0;
  UniqueFd second = Connect(kForward, port, err);
  ASSERT_TRUE(second) << std::strerror(err);
  ASSERT_TRUE(WriteAll(first.get(), "x"));
  ASSERT_TRUE(Readable(first_conn.get(), 5000ms));
  EXPECT_FALSE(Readable(server.get(), 200ms)) << "a second relay started beyond the limit";

  first.reset();
  first_conn.reset();
  UniqueFd second_conn = Accept(server.get());
  ASSERT_TRUE(second_conn) << "the held connection was never relayed";
  ASSERT_TRUE(WriteAll(second_conn.get(), "ok"));
  second_conn.reset();
  EXPECT_EQ(ReadToEof(second.get()), std::optional<std::string>("ok"));
}

}  // namespace
}  // namespace kiln::envd::port_forward
