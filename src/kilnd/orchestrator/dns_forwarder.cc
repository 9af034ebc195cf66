#include "kilnd/orchestrator/dns_forwarder.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <sstream>

#include "base/log.h"
#include "http/server.h"

namespace kiln::kilnd {
namespace asio = boost::asio;
using udp = asio::ip::udp;
using boost::system::error_code;

namespace {

constexpr size_t kMaxMessage = 4096;
constexpr int kMaxInFlight = 32;
constexpr auto kUpstreamTimeout = std::chrono::seconds(3);

auto Redirect(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

}  // namespace

std::vector<udp::endpoint> ParseNameservers(std::string_view resolv_conf) {
  std::vector<udp::endpoint> out;
  std::istringstream in{std::string(resolv_conf)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string key, value;
    if (!(f >> key >> value) || key != "nameserver") continue;
    error_code ec;
    auto addr = asio::ip::make_address_v4(value, ec);
    if (!ec) out.emplace_back(addr, 53);
  }
  return out;
}

Result<udp::endpoint> ParseDnsServer(const std::string& text) {
  std::string host = text;
  unsigned long port = 53;
  if (size_t colon = text.rfind(':'); colon != std::string::npos) {
    host = text.substr(0, colon);
    char* end = nullptr;
    port = std::strtoul(text.c_str() + colon + 1, &end, 10);
    if (*end != '\0' || port == 0 || port > 65535) {
      return Fail(Errc::kInvalidArgument, "bad DNS server port in " + text);
    }
  }
  error_code ec;
  auto addr = asio::ip::make_address_v4(host, ec);
  if (ec) return Fail(Errc::kInvalidArgument, "bad DNS server address " + text);
  return udp::endpoint(addr, static_cast<uint16_t>(port));
}

struct DnsRelay::State : std::enable_shared_from_this<DnsRelay::State> {
  State(asio::io_context& io, std::vector<udp::endpoint> up) : socket(io), upstreams(std::move(up)) {}

  // Receives queries from the sandbox until the socket is closed.
  http::Task<void> Receive() {
    auto self = shared_from_this();
    std::array<char, kMaxMessage> buf;
    for (;;) {
      udp::endpoint client;
      error_code ec;
      size_t n = co_await socket.async_receive_from(asio::buffer(buf), client, Redirect(ec));
      if (ec == asio::error::operation_aborted || !socket.is_open()) break;
      if (ec || n < 12) continue;  // shorter than a DNS header: ignore
      if (in_flight >= kMaxInFlight) continue;  // a flood: drop, the client retries
      ++in_flight;
      asio::co_spawn(socket.get_executor(), Relay(std::string(buf.data(), n), client),
                     asio::detached);
    }
  }

  // Asks each upstream in turn; the first answer with the query's id goes back to the client.
  http::Task<void> Relay(std::string query, udp::endpoint client) {
    auto self = shared_from_this();
    auto executor = co_await asio::this_coro::executor;
    for (const auto& upstream : upstreams) {
      // Shared with the timeout handler, which may run after this coroutine moved on.
      auto out = std::make_shared<udp::socket>(executor);
      error_code ec;
      out->open(udp::v4(), ec);
      if (ec) break;
      co_await out->async_send_to(asio::buffer(query), upstream, Redirect(ec));
      if (ec) continue;
      asio::steady_timer timer(executor, kUpstreamTimeout);
      timer.async_wait([out](const error_code& e) {
        if (!e) {
          error_code ignored;
          out->cancel(ignored);
        }
      });
      std::array<char, kMaxMessage> reply;
      for (;;) {
        udp::endpoint from;
        size_t n = co_await out->async_receive_from(asio::buffer(reply), from, Redirect(ec));
        if (ec) break;
        // Only the upstream's answer to this query (same id) counts.
        if (from != upstream || n < 12 || reply[0] != query[0] || reply[1] != query[1]) continue;
        timer.cancel();
        if (socket.is_open()) {
          co_await socket.async_send_to(asio::buffer(reply.data(), n), client, Redirect(ec));
        }
        --in_flight;
        co_return;
      }
      timer.cancel();
    }
    --in_flight;
  }

  void Stop() {
    error_code ignored;
    socket.close(ignored);
  }

  udp::socket socket;
  std::vector<udp::endpoint> upstreams;
  int in_flight = 0;
};

DnsRelay::~DnsRelay() { state_->Stop(); }

DnsForwarder::DnsForwarder(asio::io_context& io, std::vector<udp::endpoint> upstreams)
    : io_(io), upstreams_(std::move(upstreams)) {}

Result<std::unique_ptr<DnsRelay>> DnsForwarder::Serve(Instance& instance) {
  KILN_ASSIGN_OR_RETURN(UniqueFd fd, instance.OpenUdpSocket());
  const std::string address(instance.dns_address());
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(53);
  if (inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    return Fail(Errc::kInternal, "bad DNS address " + address + " of sandbox " + instance.id());
  }
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    return FailErrno("bind " + address + ":53 in sandbox " + instance.id());
  }
  auto state = std::make_shared<DnsRelay::State>(io_, upstreams_);
  error_code ec;
  state->socket.assign(udp::v4(), fd.get(), ec);
  if (ec) return Fail(Errc::kInternal, "adopt DNS socket: " + ec.message());
  (void)fd.release();
  asio::co_spawn(io_, state->Receive(), asio::detached);
  return std::make_unique<DnsRelay>(std::move(state));
}

}  // namespace kiln::kilnd
