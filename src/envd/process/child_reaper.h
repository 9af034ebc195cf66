#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <functional>

namespace kiln::envd {

// The agent's one collector of exited children: on every SIGCHLD it calls
// waitpid(-1, WNOHANG) until nothing is left and hands each (pid, wait status) to `on_exit`.
// Children nobody tracks are collected too: as PID 1 of a sandbox the agent inherits every
// orphan, and they must not stay zombies. Hence nothing else in the agent may wait for its
// children asynchronously. Lives on the io_context thread.
class ChildReaper {
 public:
  using ExitFn = std::function<void(pid_t pid, int wait_status)>;

  ChildReaper(boost::asio::io_context& io, ExitFn on_exit);
  ChildReaper(const ChildReaper&) = delete;
  ChildReaper& operator=(const ChildReaper&) = delete;

  // Collects whatever has exited so far.
  void ReapNow();

 private:
  void Arm();

  boost::asio::signal_set sigchld_;
  ExitFn on_exit_;
};

}  // namespace kiln::envd
