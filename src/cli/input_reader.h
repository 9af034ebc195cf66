#pragma once

// Reads a local descriptor (the CLI's stdin) from a coroutine without blocking the event
// loop: pipes, terminals and sockets are waited on with the reactor; regular files and block
// devices, which are always "ready", are read directly. The reactor needs O_NONBLOCK, which
// lives in the file description the caller shares with other processes (a terminal shared
// with the login shell), so the original flags are put back when the reader is destroyed.
// Not thread-safe; one reader per descriptor at a time.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "http/server.h"

namespace kiln::cli {

class InputReader {
 public:
  // Does not take ownership of `fd`; it must stay open while the reader exists.
  static Result<std::unique_ptr<InputReader>> Open(boost::asio::any_io_executor executor, int fd);
  ~InputReader();
  InputReader(const InputReader&) = delete;
  InputReader& operator=(const InputReader&) = delete;

  // The next bytes (at most `max`); "" at end of input. kCanceled after Cancel().
  http::Task<Result<std::string>> Read(size_t max);
  // Makes a pending and every later Read() return kCanceled.
  void Cancel();

 private:
  InputReader(int fd, int saved_flags,
              std::optional<boost::asio::posix::stream_descriptor> descriptor);

  int fd_;
  int saved_flags_;
  std::optional<boost::asio::posix::stream_descriptor> descriptor_;  // over a dup of fd_
  bool canceled_ = false;
};

// True when `fd` is /dev/null (reading it gives nothing, so there is nothing to forward).
bool IsDevNull(int fd);

}  // namespace kiln::cli
