#pragma once

// Coroutines started beside the caller's (an input pump, a signal handler) that must end
// before the state they use goes away: Wait() returns once every spawned one has finished.
// Not thread-safe; one io_context.

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "http/server.h"

namespace kiln::cli {

class TaskGroup {
 public:
  explicit TaskGroup(boost::asio::any_io_executor executor);
  // REQUIRES: Wait() runs before the group and whatever `task` uses are destroyed.
  void Spawn(http::Task<void> task);
  http::Task<void> Wait();

 private:
  boost::asio::any_io_executor executor_;
  boost::asio::steady_timer wake_;
  int pending_ = 0;
};

}  // namespace kiln::cli
