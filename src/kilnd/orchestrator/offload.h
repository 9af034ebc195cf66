#pragma once

// Runs blocking work (namespace setup, cgroup freeze, file copies) on a worker pool and
// resumes the awaiting coroutine on its own executor with the result.

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <utility>

#include "http/server.h"

namespace kiln::kilnd {

// g++ 12 BUG: a lambda temporary inside a co_await expression (co_await Offload(pool, [x]{..}))
// is copied bitwise and destroyed twice. Name the lambda first and pass std::move(name).
template <typename Fn>
http::Task<decltype(std::declval<Fn&>()())> Offload(boost::asio::thread_pool& pool, Fn fn) {
  using T = decltype(fn());
  return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void(T)>(
      [&pool](auto handler, Fn work) {
        auto executor = boost::asio::get_associated_executor(handler);
        boost::asio::post(pool, [handler = std::move(handler), work = std::move(work),
                                 executor]() mutable {
          T result = work();
          boost::asio::post(executor, [handler = std::move(handler),
                                       result = std::move(result)]() mutable {
            std::move(handler)(std::move(result));
          });
        });
      },
      boost::asio::use_awaitable, std::move(fn));
}

}  // namespace kiln::kilnd
