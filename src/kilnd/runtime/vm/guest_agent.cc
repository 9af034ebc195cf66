#include "kilnd/runtime/vm/guest_agent.h"

#include <poll.h>
#include <sys/socket.h>

#include <string>
// clang-format off
#include <boost/asio/io_context.hpp>
// clang-format on

#include "http/client.h"
#include "kilnd/net/netns.h"
#include "kilnd/runtime/vm/run_sync.h"

namespace kiln::kilnd::vm {
namespace {

using std::chrono::milliseconds;

// One GET /health; its status.
http::Task<Result<unsigned>> GetHealth(UniqueFd fd, uint16_t port) {
  const std::string address = kGuestAddress;
  KILN_CO_ASSIGN_OR_RETURN(auto conn, co_await http::ClientConnection::ConnectFd(
                                          std::move(fd), address, port, milliseconds(1000)));
  http::ClientRequest req;
  req.target = "/health";
  KILN_CO_ASSIGN_OR_RETURN(auto res, co_await conn.Send(std::move(req), milliseconds(2000)));
  co_return res.status;
}

bool Exited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return pidfd >= 0 && poll(&p, 1, 0) == 1;
}

}  // namespace

Status WaitGuestAgent(int netns_fd, int pidfd, Clock::time_point deadline, uint16_t port) {
  boost::asio::io_context io;
  std::string last = "no answer";
  milliseconds delay(5);
  while (Clock::now() < deadline) {
    if (Exited(pidfd)) return Fail(Errc::kUnavailable, "qemu exited before the agent answered");
    KILN_ASSIGN_OR_RETURN(UniqueFd fd, net::SocketInNetns(netns_fd, AF_INET,
                                                          SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    auto status = RunSync(io, GetHealth(std::move(fd), port));
    if (status && *status / 100 == 2) return {};
    last = status ? "/health answered " + std::to_string(*status) : status.error().message();
    // The guest is still booting: wait on QEMU's exit for a moment instead of sleeping.
    pollfd p{pidfd, POLLIN, 0};
    (void)poll(&p, pidfd >= 0 ? 1 : 0, static_cast<int>(delay.count()));
    delay = std::min(delay * 2, milliseconds(200));
  }
  return Fail(Errc::kTimeout, "the guest's agent did not answer in time: " + last);
}

}  // namespace kiln::kilnd::vm
