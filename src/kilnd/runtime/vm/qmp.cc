#include "kilnd/runtime/vm/qmp.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace kiln::kilnd::vm {
namespace {

namespace asio = boost::asio;
using Json = nlohmann::json;
using error_code = boost::system::error_code;
using SteadyClock = std::chrono::steady_clock;

// SECURITY: QMP text comes from QEMU, which runs guest-influenced code; cap a message.
constexpr size_t kMaxMessage = 16u << 20;

auto Redirect(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

// Built outside coroutine bodies (g++ 12 cannot compile braced json lists inside them).
std::string CommandLine(const std::string& command, const Json& arguments, uint64_t id) {
  Json msg = Json::object();
  msg["execute"] = command;
  if (!arguments.is_null()) msg["arguments"] = arguments;
  msg["id"] = id;
  return msg.dump() + "\n";
}

Json FdNameArgs(const std::string& name) {
  Json args = Json::object();
  args["fdname"] = name;
  return args;
}

// Sends one byte with `fd` attached. False if the socket is full (EAGAIN).
Result<bool> SendByteWithFd(int sock, char byte, int fd) {
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  for (;;) {
    ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n == 1) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    return FailErrno("qmp: sendmsg with a descriptor");
  }
}

Error ReplyError(const std::string& command, const Json& reply) {
  const Json& err = reply["error"];
  std::string cls = err.is_object() ? err.value("class", "") : "";
  std::string desc = err.is_object() ? err.value("desc", "") : "";
  return Error(Errc::kInternal, "qmp " + command + ": " + cls + ": " + log::Sanitize(desc, 400));
}

Error IoError(const char* what, const error_code& ec, bool timed_out) {
  if (timed_out) return Error(Errc::kTimeout, std::string("qmp ") + what + ": timed out");
  if (ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::broken_pipe) {
    return Error(Errc::kUnavailable, std::string("qmp ") + what + ": QEMU closed the connection");
  }
  return Error(Errc::kUnavailable, std::string("qmp ") + what + ": " + ec.message());
}

}  // namespace

QmpClient::QmpClient(Socket socket) : socket_(std::move(socket)), timer_(socket_.get_executor()) {}

void QmpClient::Close() {
  error_code ec;
  socket_.close(ec);
  timer_.cancel();
}

void QmpClient::ArmTimer(SteadyClock::time_point deadline) {
  timed_out_ = false;
  timer_.expires_at(deadline);
  // Only touches `this` when the timer fired (not when cancelled, e.g. on destruction).
  timer_.async_wait([this](const error_code& ec) {
    if (ec) return;
    timed_out_ = true;
    error_code ignored;
    socket_.cancel(ignored);
  });
}

asio::awaitable<Result<Json>> QmpClient::ReadMessage(SteadyClock::time_point deadline) {
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl == std::string::npos) {
      ArmTimer(deadline);
      error_code ec;
      co_await asio::async_read_until(socket_, asio::dynamic_buffer(buffer_, kMaxMessage), '\n',
                                      Redirect(ec));
      timer_.cancel();
      if (ec == asio::error::not_found) {
        co_return Unexpected(Error(Errc::kResourceExhausted, "qmp: message larger than 16 MiB"));
      }
      if (ec) co_return Unexpected(IoError("read", ec, timed_out_));
      continue;
    }
    std::string line = buffer_.substr(0, nl);
    buffer_.erase(0, nl + 1);
    if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
    Json msg = Json::parse(line, nullptr, false);
    if (!msg.is_object()) {
      co_return Unexpected(
          Error(Errc::kInternal, "qmp: malformed message: " + log::Sanitize(line, 200)));
    }
    co_return msg;
  }
}

asio::awaitable<Status> QmpClient::WriteLine(std::string line, SteadyClock::time_point deadline,
                                             int fd) {
  ArmTimer(deadline);
  error_code ec;
  if (fd >= 0) {
    // The descriptor travels with the first byte; the rest follows as plain data.
    socket_.native_non_blocking(true, ec);
    if (ec) co_return Unexpected(IoError("write", ec, false));
    for (;;) {
      KILN_CO_ASSIGN_OR_RETURN(bool sent, SendByteWithFd(socket_.native_handle(), line[0], fd));
      if (sent) break;
      co_await socket_.async_wait(Socket::wait_write, Redirect(ec));
      if (ec) break;
    }
    line.erase(0, 1);
  }
  if (!ec) co_await asio::async_write(socket_, asio::buffer(line), Redirect(ec));
  timer_.cancel();
  if (ec) co_return Unexpected(IoError("write", ec, timed_out_));
  co_return Status{};
}

asio::awaitable<Result<Json>> QmpClient::Execute(std::string command, Json arguments,
                                                 Timeout timeout) {
  co_return co_await Run(std::move(command), std::move(arguments), timeout, -1);
}

asio::awaitable<Status> QmpClient::SendFd(std::string name, int fd, Timeout timeout) {
  if (fd < 0) co_return Unexpected(Error(Errc::kInvalidArgument, "qmp getfd: no descriptor"));
  KILN_CO_TRY(co_await Run("getfd", FdNameArgs(name), timeout, fd));
  co_return Status{};
}

asio::awaitable<Result<Json>> QmpClient::Run(std::string command, Json arguments, Timeout timeout,
                                             int fd) {
  if (busy_) co_return Unexpected(Error(Errc::kFailedPrecondition, "qmp: a command is pending"));
  busy_ = true;
  struct Idle {
    bool& busy;
    ~Idle() { busy = false; }
  } idle{busy_};
  SteadyClock::time_point deadline = SteadyClock::now() + timeout;
  uint64_t id = next_id_++;
  KILN_CO_TRY(co_await WriteLine(CommandLine(command, arguments, id), deadline, fd));
  for (;;) {
    KILN_CO_ASSIGN_OR_RETURN(Json msg, co_await ReadMessage(deadline));
    if (msg.contains("event")) {
      events_.push_back(std::move(msg));
      continue;
    }
    const Json* msg_id = msg.contains("id") ? &msg["id"] : nullptr;
    if (msg_id == nullptr || !msg_id->is_number_unsigned() || msg_id->get<uint64_t>() != id) {
      continue;  // a reply to a command of an earlier, abandoned call
    }
    if (msg.contains("error")) co_return Unexpected(ReplyError(command, msg));
    if (!msg.contains("return")) {
      co_return Unexpected(Error(Errc::kInternal, "qmp " + command + ": reply without return"));
    }
    co_return std::move(msg["return"]);
  }
}

asio::awaitable<Result<Json>> QmpClient::NextEvent(Timeout timeout) {
  if (!events_.empty()) {
    Json e = std::move(events_.front());
    events_.pop_front();
    co_return e;
  }
  if (busy_) co_return Unexpected(Error(Errc::kFailedPrecondition, "qmp: a command is pending"));
  SteadyClock::time_point deadline = SteadyClock::now() + timeout;
  for (;;) {
    KILN_CO_ASSIGN_OR_RETURN(Json msg, co_await ReadMessage(deadline));
    if (msg.contains("event")) co_return msg;
  }
}

asio::awaitable<Result<std::unique_ptr<QmpClient>>> QmpClient::Handshake(Socket socket,
                                                                         Timeout timeout) {
  auto client = std::make_unique<QmpClient>(std::move(socket));
  SteadyClock::time_point deadline = SteadyClock::now() + timeout;
  KILN_CO_ASSIGN_OR_RETURN(Json greeting, co_await client->ReadMessage(deadline));
  if (!greeting.contains("QMP") || !greeting["QMP"].is_object()) {
    co_return Unexpected(
        Error(Errc::kInternal, "qmp: unexpected greeting " + log::Sanitize(greeting.dump(), 200)));
  }
  client->greeting_ = std::move(greeting["QMP"]);
  auto left = std::chrono::duration_cast<Timeout>(deadline - SteadyClock::now());
  KILN_CO_TRY(co_await client->Execute("qmp_capabilities", Json(), std::max(left, Timeout(1))));
  co_return client;
}

asio::awaitable<Result<std::unique_ptr<QmpClient>>> QmpClient::Connect(std::filesystem::path path,
                                                                       Timeout timeout) {
  Socket socket(co_await asio::this_coro::executor);
  error_code ec;
  co_await socket.async_connect(asio::local::stream_protocol::endpoint(path.string()),
                                Redirect(ec));
  if (ec)
    co_return Unexpected(
        Error(Errc::kUnavailable, "qmp: connect " + path.string() + ": " + ec.message()));
  co_return co_await Handshake(std::move(socket), timeout);
}

}  // namespace kiln::kilnd::vm
