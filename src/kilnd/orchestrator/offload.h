#pragma once

// Runs blocking work (namespace setup, cgroup freeze, file copies) on a worker pool and
// resumes the awaiting coroutine on its own executor with the result.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <utility>

#include "http/server.h"

namespace kiln::kilnd {

template <typename Fn>
auto Offload(boost::asio::thread_pool& pool, Fn fn) -> http::Task<decltype(fn())> {
  using T = decltype(fn());
  co_return co_await boost::asio::co_spawn(
      pool.get_executor(),
      [fn = std::move(fn)]() mutable -> boost::asio::awaitable<T> { co_return fn(); },
      boost::asio::use_awaitable);
}

}  // namespace kiln::kilnd
