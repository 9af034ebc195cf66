#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <functional>
#include <map>

namespace kiln::envd {

// The agent's one collector of exited children: on every SIGCHLD it calls
// waitpid(-1, WNOHANG) until nothing is left and hands each (pid, wait status) to `on_exit`.
// Children nobody tracks are collected too: as PID 1 of a sandbox the agent inherits every
// orphan, and they must not stay zombies. Hence nothing else in the agent may wait for its
// children asynchronously: a component that needs one child's exit registers it with Watch.
// Lives on the io_context thread.
class ChildReaper {
 public:
  using ExitFn = std::function<void(pid_t pid, int wait_status)>;

  ChildReaper(boost::asio::io_context& io, ExitFn on_exit);
  ChildReaper(const ChildReaper&) = delete;
  ChildReaper& operator=(const ChildReaper&) = delete;

  // Collects whatever has exited so far.
  void ReapNow();

  // Hands the exit of child `pid` to `fn` (once) instead of `on_exit`. REQUIRES: `pid` is a
  // child not yet reaped, registered before the io_context runs again after spawning it (so
  // that its exit cannot be collected first).
  void Watch(pid_t pid, ExitFn fn);
  // Forgets a Watch; the child's exit then goes to `on_exit` like any other.
  void Unwatch(pid_t pid);

 private:
  void Arm();

  boost::asio::signal_set sigchld_;
  ExitFn on_exit_;
  std::map<pid_t, ExitFn> watched_;
};

}  // namespace kiln::envd
