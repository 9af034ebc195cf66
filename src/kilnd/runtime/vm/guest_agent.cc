#include "kilnd/runtime/vm/guest_agent.h"

#include <poll.h>
#include <sys/socket.h>

#include <string>
// clang-format off
#include <boost/asio/io_context.hpp>
// clang-format on

#include "http/client.h"
#include "http/connect.h"
#include "wire/process.h"
#include <nlohmann/json.hpp>
#include "kilnd/net/netns.h"
#include "kilnd/runtime/vm/run_sync.h"

namespace kiln::kilnd::vm {
namespace {

using std::chrono::milliseconds;

// One GET; its status.
http::Task<Result<unsigned>> GetStatus(UniqueFd fd, uint16_t port, std::string path) {
  const std::string address = kGuestAddress;
  KILN_CO_ASSIGN_OR_RETURN(auto conn, co_await http::ClientConnection::ConnectFd(
                                          std::move(fd), address, port, milliseconds(1000)));
  http::ClientRequest req;
  req.target = path;
  KILN_CO_ASSIGN_OR_RETURN(auto res, co_await conn.Send(std::move(req), milliseconds(2000)));
  co_return res.status;
}

bool Exited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return pidfd >= 0 && poll(&p, 1, 0) == 1;
}


// Sends process.Process/Start and returns the connection with the stream's head read (a
// shared_ptr: RunSync needs a default-constructible result).
http::Task<Result<std::shared_ptr<http::ClientConnection>>> StartProcess(UniqueFd fd,
                                                                         std::string body) {
  const std::string address = kGuestAddress;
  KILN_CO_ASSIGN_OR_RETURN(auto conn, co_await http::ClientConnection::ConnectFd(
                                          std::move(fd), address, kGuestAgentPort, milliseconds(2000)));
  http::ClientRequest req;
  req.method = http::Verb::post;
  req.target = "/process.Process/Start";
  req.content_type = "application/connect+json";
  req.headers.set(boost::beast::http::field::authorization, "Basic cm9vdDo=");  // root:
  req.body = http::connect::EncodeEnvelope(0, body);
  KILN_CO_ASSIGN_OR_RETURN(auto head, co_await conn.SendForStream(std::move(req), milliseconds(10000)));
  if (head.status != 200) {
    co_return Unexpected(Error(Errc::kInternal, "the agent answered HTTP " + std::to_string(head.status)));
  }
  co_return std::make_shared<http::ClientConnection>(std::move(conn));
}

// What the stream holds now (waiting at most `wait` for more).
http::Task<Result<std::string>> Drain(http::ClientConnection& conn, milliseconds wait) {
  std::string raw;
  for (;;) {
    auto piece = co_await conn.ReadSome(65536, wait);
    if (!piece || piece->empty() || raw.size() > (256u << 10)) break;
    raw += *piece;
  }
  co_return raw;
}

// Starts `argv` in the guest as root (the agent in the network namespace `netns_fd`): the
// connection with the process's stream, its head read.
Result<std::shared_ptr<http::ClientConnection>> StartInGuest(boost::asio::io_context& io,
                                                             int netns_fd,
                                                             const std::vector<std::string>& argv) {
  if (argv.empty()) return Fail(Errc::kInvalidArgument, "empty command");
  KILN_ASSIGN_OR_RETURN(UniqueFd fd, net::SocketInNetns(netns_fd, AF_INET,
                                                        SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  auto conn = RunSync(io, StartProcess(std::move(fd), wire::ServiceStartBody(argv)));
  if (!conn) return Unexpected(std::move(conn).error().Wrap("start " + argv[0]));
  return std::move(*conn);
}

}  // namespace

Status StartGuestService(int netns_fd, int pidfd, const std::vector<std::string>& argv,
                         uint16_t port, const std::string& path, Clock::time_point deadline) {
  boost::asio::io_context io;
  KILN_ASSIGN_OR_RETURN(auto conn, StartInGuest(io, netns_fd, argv));
  auto ready = WaitGuestHttp(netns_fd, pidfd, deadline, port, path);
  if (!ready) {
    auto raw = RunSync(io, Drain(*conn, milliseconds(200)));
    std::string output = raw ? wire::ProcessStreamText(*raw) : "";
    return Fail(ready.error().code(), argv[0] + " not ready (" + ready.error().message() + ")" +
                                          (output.empty() ? "" : "; its output: " + output));
  }
  return {};
}

Status RunGuestCommand(int netns_fd, const std::vector<std::string>& argv,
                       Clock::time_point deadline) {
  boost::asio::io_context io;
  KILN_ASSIGN_OR_RETURN(auto conn, StartInGuest(io, netns_fd, argv));
  // The agent ends the stream after the process's end event.
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  auto raw = RunSync(io, Drain(*conn, std::max(left, milliseconds(1))));
  if (!raw) return Unexpected(std::move(raw).error().Wrap(argv[0]));
  auto end = wire::ProcessStreamEnd(*raw);
  if (!end && Clock::now() >= deadline) {
    return Fail(Errc::kTimeout, argv[0] + " did not end in time; its output: " +
                                    wire::ProcessStreamText(*raw));
  }
  if (!end) {
    return Fail(Errc::kUnavailable, argv[0] + " ended without an exit status: " +
                                        wire::ProcessStreamText(*raw));
  }
  if (!end->exited || end->exit_code != 0) {
    return Fail(Errc::kInternal, argv[0] + " failed: " + wire::ProcessStreamText(*raw));
  }
  return {};
}

Status WaitGuestAgent(int netns_fd, int pidfd, Clock::time_point deadline, uint16_t port) {
  return WaitGuestHttp(netns_fd, pidfd, deadline, port, "/health");
}

Status WaitGuestHttp(int netns_fd, int pidfd, Clock::time_point deadline, uint16_t port,
                     const std::string& path) {
  boost::asio::io_context io;
  std::string last = "no answer";
  milliseconds delay(5);
  while (Clock::now() < deadline) {
    if (Exited(pidfd)) return Fail(Errc::kUnavailable, "qemu exited before the agent answered");
    KILN_ASSIGN_OR_RETURN(UniqueFd fd, net::SocketInNetns(netns_fd, AF_INET,
                                                          SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    auto status = RunSync(io, GetStatus(std::move(fd), port, path));
    if (status && *status / 100 == 2) return {};
    last = status ? path + " answered " + std::to_string(*status) : status.error().message();
    // The guest is still booting: wait on QEMU's exit for a moment instead of sleeping.
    pollfd p{pidfd, POLLIN, 0};
    (void)poll(&p, pidfd >= 0 ? 1 : 0, static_cast<int>(delay.count()));
    delay = std::min(delay * 2, milliseconds(200));
  }
  return Fail(Errc::kTimeout, "port " + std::to_string(port) + " in the guest did not answer in time: " + last);
}

}  // namespace kiln::kilnd::vm
