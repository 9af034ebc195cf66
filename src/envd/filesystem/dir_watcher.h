#pragma once

#include <utility>  // before Boost.Asio: its awaitable.hpp uses std::exchange unincluded

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "sys/inotify_watch.h"

namespace kiln::envd {

// Reads an InotifyWatch on the io_context and buffers its events until the owner takes
// them: WatchDir streams drain it continuously, CreateWatcher watchers on each poll.
// Consecutive identical WRITE events for one path collapse into one while unread. More than
// `max_pending` unread events fail the watcher with kResourceExhausted.
//
// Shared ownership is real here: the owner holds one reference and the pending read holds
// another until Stop() cancels it. Not thread-safe; lives on the agent's io_context thread.
class DirWatcher : public std::enable_shared_from_this<DirWatcher> {
 public:
  using Clock = std::chrono::steady_clock;

  // Starts reading `watch` (set up completely).
  static Result<std::shared_ptr<DirWatcher>> Start(boost::asio::io_context& io,
                                                   sys::InotifyWatch watch, size_t max_pending);
  // Opens the watch in one go and starts reading; errors are those of InotifyWatch::Open.
  static Result<std::shared_ptr<DirWatcher>> Start(boost::asio::io_context& io,
                                                   const std::string& path, bool recursive,
                                                   size_t max_pending);
  ~DirWatcher();
  DirWatcher(const DirWatcher&) = delete;
  DirWatcher& operator=(const DirWatcher&) = delete;

  // Stops reading and releases the inotify instance once the pending read has unwound.
  // Idempotent. Events already buffered stay available.
  void Stop();

  // Returns when events are buffered, the watcher failed or stopped, or at `until`.
  // At most one caller may wait at a time.
  boost::asio::awaitable<void> Wait(Clock::time_point until);

  // Takes every buffered event.
  std::vector<sys::WatchEvent> Take();
  // Why the watcher stopped on its own (queue overflow, too many unread events, ...).
  const std::optional<Error>& error() const { return error_; }
  const std::string& path() const { return path_; }

 private:
  DirWatcher(boost::asio::io_context& io, sys::InotifyWatch watch, size_t max_pending);
  boost::asio::awaitable<void> ReadLoop(std::shared_ptr<DirWatcher> self);
  void Append(std::vector<sys::WatchEvent> events);
  void FailWith(Error error);

  std::string path_;
  sys::InotifyWatch watch_;
  // Waits on watch_'s fd; released (not closed) on destruction, since watch_ owns the fd.
  boost::asio::posix::stream_descriptor readable_;
  // Cancelled to wake a Wait()er when events arrive.
  boost::asio::steady_timer wake_;
  size_t max_pending_;
  std::deque<sys::WatchEvent> pending_;
  std::optional<Error> error_;
  bool stopped_ = false;
};

}  // namespace kiln::envd
