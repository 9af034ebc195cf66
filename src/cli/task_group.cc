#include "cli/task_group.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>

namespace kiln::cli {

TaskGroup::TaskGroup(boost::asio::any_io_executor executor)
    : executor_(executor), wake_(executor) {}

void TaskGroup::Spawn(http::Task<void> task) {
  ++pending_;
  // An exception ends that task only; the group still counts it as finished.
  boost::asio::co_spawn(executor_, std::move(task), [this](std::exception_ptr) {
    --pending_;
    wake_.cancel();
  });
}

http::Task<void> TaskGroup::Wait() {
  while (pending_ > 0) {
    wake_.expires_at(boost::asio::steady_timer::time_point::max());
    boost::system::error_code ec;
    co_await wake_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  }
}

}  // namespace kiln::cli
