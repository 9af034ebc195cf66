#pragma once

// libzmq sockets on the Asio loop, without threads of our own: the socket's ZMQ_FD is watched
// by a posix::stream_descriptor. ZMQ_FD is edge-triggered and only tells that the socket's
// state may have changed, so the rules are: after a wake-up, receive until ZMQ_EVENTS has no
// ZMQ_POLLIN; check ZMQ_EVENTS before waiting again; and after every send (which processes
// pending commands too and can swallow the edge) check ZMQ_EVENTS and wake the reader.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "http/server.h"

namespace kiln::interp {

using Frames = std::vector<std::string>;

// Owns one libzmq context (its I/O thread). Sockets made from it must be closed first.
class ZmqContext {
 public:
  // kInternal when libzmq cannot create one.
  static Result<ZmqContext> Create();
  ZmqContext(ZmqContext&& other) noexcept;
  ZmqContext& operator=(ZmqContext&& other) noexcept;
  ZmqContext(const ZmqContext&) = delete;
  ZmqContext& operator=(const ZmqContext&) = delete;
  ~ZmqContext();

  void* get() const { return ctx_; }

 private:
  explicit ZmqContext(void* ctx) : ctx_(ctx) {}
  void* ctx_ = nullptr;
};

// One libzmq socket (ZMQ_LINGER 0) whose readability is awaited on an Asio executor. The
// stream_descriptor only borrows ZMQ_FD (released, never closed, before zmq_close). Not
// thread-safe: use it on the executor's one thread. At most one WaitReadable at a time.
class ZmqSocket {
 public:
  // `type` is ZMQ_DEALER, ZMQ_SUB, ... `context` must outlive the socket.
  static Result<std::unique_ptr<ZmqSocket>> Open(const boost::asio::any_io_executor& executor,
                                                 ZmqContext& context, int type);
  ZmqSocket(const ZmqSocket&) = delete;
  ZmqSocket& operator=(const ZmqSocket&) = delete;
  ~ZmqSocket();

  Status SetOption(int option, int value);
  Status SetOption(int option, std::string_view value);
  Status Connect(const std::string& endpoint);
  Status Bind(const std::string& endpoint);

  // Queues one multipart message without blocking. kResourceExhausted when the send queue is
  // full (ZMQ_SNDHWM), kUnavailable when the socket is closed.
  Status Send(std::span<const std::string> frames);

  // The next whole message, or nullopt when none is queued right now.
  Result<std::optional<Frames>> TryReceive();

  // Returns true when a message may be ready (TryReceive then tells), false once the socket
  // is closed. Returns at once when ZMQ_EVENTS already has ZMQ_POLLIN.
  http::Task<bool> WaitReadable();

  // Ends a pending WaitReadable (it returns false) and closes the socket. Idempotent.
  void Close();
  bool closed() const { return socket_ == nullptr; }

 private:
  ZmqSocket(const boost::asio::any_io_executor& executor, void* socket, int fd);
  // True when ZMQ_EVENTS has ZMQ_POLLIN (this also processes pending commands).
  bool HasInput();
  // After an operation that may have consumed the ZMQ_FD edge: wakes a waiting reader when
  // input is ready.
  void WakeIfReadable();

  void* socket_ = nullptr;
  boost::asio::posix::stream_descriptor fd_;
  bool waiting_ = false;
};

}  // namespace kiln::interp
