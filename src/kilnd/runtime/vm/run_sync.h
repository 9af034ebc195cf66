#pragma once

// Runs a coroutine to completion on a private io_context, for the vm runtime's blocking
// calls (Runtime::Create and the Instance methods run on kilnd's worker threads).

#include <exception>
#include <optional>
#include <utility>  // before Boost 1.74's awaitable.hpp, which uses std::exchange
// clang-format off
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
// clang-format on

#include "base/error.h"

namespace kiln::kilnd::vm {

// `task` returns a Result or Status; nothing else may run on `io` meanwhile.
template <typename T>
T RunSync(boost::asio::io_context& io, boost::asio::awaitable<T> task) {
  std::optional<T> out;
  boost::asio::co_spawn(io, std::move(task), [&out](std::exception_ptr e, T value) {
    if (!e) out.emplace(std::move(value));
  });
  io.restart();
  io.run();
  if (!out) return Unexpected(Error(Errc::kInternal, "the operation ended with an exception"));
  return std::move(*out);
}

}  // namespace kiln::kilnd::vm
