#pragma once

// A client of QEMU's machine protocol (QMP): JSON objects, one per line, over a unix
// socket. After the greeting it negotiates capabilities; then Execute() sends
// {"execute": cmd, "arguments": args, "id": n} and returns the "return" value of the reply
// with the same id. Asynchronous events that arrive meanwhile are queued for NextEvent().
//
// Not thread-safe: use it from one strand, one call at a time (a second Execute while one
// is pending is kFailedPrecondition).

#include <chrono>
#include <deque>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>  // before Boost 1.74's awaitable.hpp, which uses std::exchange

// clang-format off
#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>
// clang-format on

#include "base/error.h"

namespace kiln::kilnd::vm {

class QmpClient {
 public:
  using Socket = boost::asio::local::stream_protocol::socket;
  using Json = nlohmann::json;
  using Timeout = std::chrono::milliseconds;

  // Takes a connected socket (e.g. accepted from the listener QEMU connects to, see
  // MicrovmConfig::qmp_socket), reads the greeting and sends qmp_capabilities.
  // kTimeout if QEMU does not answer within `timeout`; kUnavailable if it hangs up.
  static boost::asio::awaitable<Result<std::unique_ptr<QmpClient>>> Handshake(Socket socket,
                                                                              Timeout timeout);
  // Connects to a QMP server socket (-qmp unix:PATH,server=on) and does the handshake.
  static boost::asio::awaitable<Result<std::unique_ptr<QmpClient>>> Connect(
      std::filesystem::path path, Timeout timeout);

  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // The greeting's "QMP" object ({"version": ..., "capabilities": [...]}).
  const Json& greeting() const { return greeting_; }

  // Runs `command` with `arguments` (an object, or null for none). The reply's "return"
  // value; kInternal "qmp <command>: <class>: <desc>" for an error reply; kTimeout;
  // kUnavailable when the connection closes (QEMU exited, e.g. after "quit").
  boost::asio::awaitable<Result<Json>> Execute(std::string command, Json arguments,
                                               Timeout timeout);

  // Runs "getfd" handing `fd` (a descriptor of ours; QEMU receives a duplicate) to QEMU
  // under `name` (SCM_RIGHTS on the QMP socket). Later commands refer to it by name, e.g.
  // "migrate-incoming" with uri "fd:<name>" or "netdev_add" of a tap with fd=<name>, so
  // QEMU can be given descriptors it could not open itself (seccomp, other namespaces).
  boost::asio::awaitable<Status> SendFd(std::string name, int fd, Timeout timeout);

  // The next asynchronous event ({"event": NAME, "data": ..., "timestamp": ...}): a queued
  // one, else the next to arrive within `timeout`.
  boost::asio::awaitable<Result<Json>> NextEvent(Timeout timeout);

  // Events received and not yet taken, oldest first.
  std::deque<Json> TakeEvents() { return std::exchange(events_, {}); }

  void Close();

  explicit QmpClient(Socket socket);  // use Handshake / Connect

 private:
  // The next message from QEMU (reply, event or greeting).
  boost::asio::awaitable<Result<Json>> ReadMessage(std::chrono::steady_clock::time_point deadline);
  // `fd` >= 0 is attached to the first byte (SCM_RIGHTS).
  boost::asio::awaitable<Status> WriteLine(std::string line,
                                           std::chrono::steady_clock::time_point deadline,
                                           int fd = -1);
  boost::asio::awaitable<Result<Json>> Run(std::string command, Json arguments, Timeout timeout,
                                           int fd);
  void ArmTimer(std::chrono::steady_clock::time_point deadline);

  Socket socket_;
  boost::asio::steady_timer timer_;
  bool timed_out_ = false;
  bool busy_ = false;
  std::string buffer_;
  uint64_t next_id_ = 1;
  Json greeting_;
  std::deque<Json> events_;
};

}  // namespace kiln::kilnd::vm
