#pragma once

// Network namespaces: an owner for a netns fd, a guard that moves the calling thread into a
// netns and back, and sockets created inside a netns.
//
// A thread's network namespace decides where socket(), /proc/sys/net and netlink act. setns()
// with CLONE_NEWNET changes only the calling thread, so other threads are unaffected while one
// worker visits a sandbox's namespace.

#include <utility>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::kilnd::net {

// Owns an fd referring to a network namespace (the namespace lives while any fd, process or
// bind mount refers to it). Move-only.
class NetNamespace {
 public:
  NetNamespace() = default;
  explicit NetNamespace(UniqueFd fd) : fd_(std::move(fd)) {}

  // A new, empty network namespace (only `lo`, down). The calling thread stays where it was.
  static Result<NetNamespace> Create();
  // The namespace of the calling thread (/proc/thread-self/ns/net).
  static Result<NetNamespace> Current();

  int get() const { return fd_.get(); }
  explicit operator bool() const { return static_cast<bool>(fd_); }
  void reset() { fd_.reset(); }

 private:
  UniqueFd fd_;
};

// While alive, the calling thread is inside another network namespace; the destructor moves it
// back to the namespace it came from (and aborts the process if that is impossible, since the
// thread would otherwise go on working in a sandbox's namespace). Must be destroyed on the
// thread that created it. Move-only; a moved-from entry does nothing.
class ScopedNetnsEntry {
 public:
  // Enters `netns_fd` (needs CAP_SYS_ADMIN over the target netns's user namespace).
  static Result<ScopedNetnsEntry> Enter(int netns_fd);
  ScopedNetnsEntry(ScopedNetnsEntry&&) = default;
  ScopedNetnsEntry& operator=(ScopedNetnsEntry&&) = delete;
  ~ScopedNetnsEntry();

 private:
  explicit ScopedNetnsEntry(UniqueFd original) : original_(std::move(original)) {}
  UniqueFd original_;  // the thread's own netns
};

// Runs `fn()` on the calling thread inside network namespace `netns_fd`, then returns the thread
// to its own namespace (also when `fn` fails). `fn` returns a Result or Status.
template <typename Fn>
auto RunInNetns(int netns_fd, Fn&& fn) -> decltype(fn()) {
  auto entry = ScopedNetnsEntry::Enter(netns_fd);
  if (!entry) return std::unexpected(std::move(entry).error());
  return fn();
}

// socket(domain, type, protocol) created inside network namespace `netns_fd`; the socket stays
// bound to that namespace (connect to 127.0.0.1 reaches the namespace's own loopback). Pass
// SOCK_NONBLOCK / SOCK_CLOEXEC in `type` as needed.
Result<UniqueFd> SocketInNetns(int netns_fd, int domain, int type, int protocol);

}  // namespace kiln::kilnd::net
