#pragma once

// A mutex for coroutines on one io_context thread: Lock() suspends until the holder Unlock()s,
// waiters go in arrival order. Used to run a context's executions one at a time.

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <memory>

#include "http/server.h"

namespace kiln::interp {

class AsyncMutex {
 public:
  http::Task<void> Lock() {
    if (!locked_) {
      locked_ = true;
      co_return;
    }
    auto executor = co_await boost::asio::this_coro::executor;
    auto waiter = std::make_shared<boost::asio::steady_timer>(executor);
    waiter->expires_at(boost::asio::steady_timer::time_point::max());
    waiters_.push_back(waiter);
    boost::system::error_code ec;
    // Unlock() hands the mutex over by cancelling this wait; `locked_` stays true.
    co_await waiter->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  }

  void Unlock() {
    if (waiters_.empty()) {
      locked_ = false;
      return;
    }
    auto next = std::move(waiters_.front());
    waiters_.pop_front();
    next->cancel();
  }

  bool locked() const { return locked_; }
  size_t waiting() const { return waiters_.size(); }

 private:
  bool locked_ = false;
  std::deque<std::shared_ptr<boost::asio::steady_timer>> waiters_;
};

}  // namespace kiln::interp
