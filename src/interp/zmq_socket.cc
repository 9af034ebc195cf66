#include "interp/zmq_socket.h"

#include <zmq.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <utility>

namespace kiln::interp {
namespace {

namespace net = boost::asio;

Error ZmqError(std::string_view what, int err) {
  std::string message(what);
  message.append(": ").append(zmq_strerror(err));
  Errc code = Errc::kInternal;
  if (err == EAGAIN) code = Errc::kResourceExhausted;
  if (err == ETERM || err == ENOTSOCK) code = Errc::kUnavailable;
  if (err == EINVAL || err == EPROTONOSUPPORT || err == ENOENT) code = Errc::kInvalidArgument;
  return Error(code, std::move(message), err);
}

}  // namespace

Result<ZmqContext> ZmqContext::Create() {
  void* ctx = zmq_ctx_new();
  if (ctx == nullptr) return Unexpected(ZmqError("zmq_ctx_new", zmq_errno()));
  return ZmqContext(ctx);
}

ZmqContext::ZmqContext(ZmqContext&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}

ZmqContext& ZmqContext::operator=(ZmqContext&& other) noexcept {
  if (this != &other) {
    if (ctx_ != nullptr) zmq_ctx_term(ctx_);
    ctx_ = std::exchange(other.ctx_, nullptr);
  }
  return *this;
}

ZmqContext::~ZmqContext() {
  if (ctx_ == nullptr) return;
  // Returns at once: every socket was closed with linger 0.
  while (zmq_ctx_term(ctx_) < 0 && zmq_errno() == EINTR) {
  }
}

ZmqSocket::ZmqSocket(const net::any_io_executor& executor, void* socket, int fd)
    : socket_(socket), fd_(executor) {
  boost::system::error_code ec;
  fd_.assign(fd, ec);  // checked by Open through is_open()
}

Result<std::unique_ptr<ZmqSocket>> ZmqSocket::Open(const net::any_io_executor& executor,
                                                   ZmqContext& context, int type) {
  void* socket = zmq_socket(context.get(), type);
  if (socket == nullptr) return Unexpected(ZmqError("zmq_socket", zmq_errno()));
  int linger = 0;
  int fd = -1;
  size_t fd_len = sizeof fd;
  if (zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
      zmq_getsockopt(socket, ZMQ_FD, &fd, &fd_len) < 0) {
    Error e = ZmqError("zmq socket setup", zmq_errno());
    zmq_close(socket);
    return Unexpected(std::move(e));
  }
  std::unique_ptr<ZmqSocket> s(new ZmqSocket(executor, socket, fd));
  if (!s->fd_.is_open()) return Fail(Errc::kInternal, "zmq socket: cannot watch ZMQ_FD");
  return s;
}

ZmqSocket::~ZmqSocket() { Close(); }

void ZmqSocket::Close() {
  if (socket_ == nullptr) return;
  // ZMQ_FD belongs to libzmq: hand it back (this also aborts a pending wait) before closing.
  if (fd_.is_open()) (void)fd_.release();
  zmq_close(std::exchange(socket_, nullptr));
}

Status ZmqSocket::SetOption(int option, int value) {
  if (closed()) return Fail(Errc::kUnavailable, "zmq_setsockopt: socket closed");
  if (zmq_setsockopt(socket_, option, &value, sizeof value) < 0) {
    return Unexpected(ZmqError("zmq_setsockopt " + std::to_string(option), zmq_errno()));
  }
  WakeIfReadable();
  return {};
}

Status ZmqSocket::SetOption(int option, std::string_view value) {
  if (closed()) return Fail(Errc::kUnavailable, "zmq_setsockopt: socket closed");
  if (zmq_setsockopt(socket_, option, value.data(), value.size()) < 0) {
    return Unexpected(ZmqError("zmq_setsockopt " + std::to_string(option), zmq_errno()));
  }
  WakeIfReadable();
  return {};
}

Status ZmqSocket::Connect(const std::string& endpoint) {
  if (closed()) return Fail(Errc::kUnavailable, "zmq_connect: socket closed");
  if (zmq_connect(socket_, endpoint.c_str()) < 0) {
    return Unexpected(ZmqError("zmq_connect " + endpoint, zmq_errno()));
  }
  WakeIfReadable();
  return {};
}

Status ZmqSocket::Bind(const std::string& endpoint) {
  if (closed()) return Fail(Errc::kUnavailable, "zmq_bind: socket closed");
  if (zmq_bind(socket_, endpoint.c_str()) < 0) {
    return Unexpected(ZmqError("zmq_bind " + endpoint, zmq_errno()));
  }
  WakeIfReadable();
  return {};
}

Status ZmqSocket::Send(std::span<const std::string> frames) {
  if (closed()) return Fail(Errc::kUnavailable, "zmq_send: socket closed");
  if (frames.empty()) return Fail(Errc::kInvalidArgument, "zmq_send: no frames");
  for (size_t i = 0; i < frames.size();) {
    int flags = ZMQ_DONTWAIT | (i + 1 < frames.size() ? ZMQ_SNDMORE : 0);
    if (zmq_send(socket_, frames[i].data(), frames[i].size(), flags) >= 0) {
      ++i;
      continue;
    }
    int err = zmq_errno();
    if (err == EINTR) continue;
    // Only the first frame can fail with EAGAIN: libzmq accepts the rest of a started message.
    WakeIfReadable();
    return Unexpected(ZmqError("zmq_send", err));
  }
  WakeIfReadable();
  return {};
}

Result<std::optional<Frames>> ZmqSocket::TryReceive() {
  if (closed()) return Fail(Errc::kUnavailable, "zmq_recv: socket closed");
  zmq_msg_t part;
  zmq_msg_init(&part);
  Frames frames;
  for (;;) {
    if (zmq_msg_recv(&part, socket_, ZMQ_DONTWAIT) < 0) {
      int err = zmq_errno();
      if (err == EINTR) continue;
      zmq_msg_close(&part);
      if (err == EAGAIN && frames.empty()) return std::nullopt;
      return Unexpected(ZmqError("zmq_recv", err));
    }
    frames.emplace_back(static_cast<const char*>(zmq_msg_data(&part)), zmq_msg_size(&part));
    if (!zmq_msg_more(&part)) break;
  }
  zmq_msg_close(&part);
  return frames;
}

bool ZmqSocket::HasInput() {
  if (closed()) return false;
  int events = 0;
  size_t len = sizeof events;
  while (zmq_getsockopt(socket_, ZMQ_EVENTS, &events, &len) < 0) {
    if (zmq_errno() != EINTR) return false;
  }
  return (events & ZMQ_POLLIN) != 0;
}

void ZmqSocket::WakeIfReadable() {
  if (waiting_ && HasInput()) {
    boost::system::error_code ec;
    fd_.cancel(ec);
  }
}

http::Task<bool> ZmqSocket::WaitReadable() {
  for (;;) {
    if (closed()) co_return false;
    if (HasInput()) co_return true;
    boost::system::error_code ec;
    waiting_ = true;
    co_await fd_.async_wait(net::posix::descriptor_base::wait_read,
                            net::redirect_error(net::use_awaitable, ec));
    // The socket may have been closed (or destroyed by its owner, who then must keep this
    // object alive until the waiter ran: see KernelState) while we waited.
    waiting_ = false;
    if (closed()) co_return false;
    if (ec && ec != net::error::operation_aborted) co_return false;
    // Readable edge or a wake-up from WakeIfReadable: ZMQ_EVENTS tells which.
  }
}

}  // namespace kiln::interp
