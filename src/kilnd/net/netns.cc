#include "kilnd/net/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/log.h"

namespace kiln::kilnd::net {
namespace {

Result<UniqueFd> OpenThreadNetns() {
  UniqueFd fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open /proc/thread-self/ns/net");
  return fd;
}

// Returns the calling thread to `original`. Failing here would leave a daemon thread inside a
// sandbox's namespace, where its next sockets and netlink requests would act: an impossible
// state (we hold the fd and the capability), so it ends the process.
void ReturnTo(int original) {
  if (::setns(original, CLONE_NEWNET) != 0) {
    int err = errno;
    KILN_LOG(Error, "cannot return thread to its network namespace", {"error", std::strerror(err)});
    std::abort();
  }
}

}  // namespace

Result<NetNamespace> NetNamespace::Current() {
  KILN_ASSIGN_OR_RETURN(UniqueFd fd, OpenThreadNetns());
  return NetNamespace(std::move(fd));
}

Result<NetNamespace> NetNamespace::Create() {
  KILN_ASSIGN_OR_RETURN(UniqueFd original, OpenThreadNetns());
  // unshare(CLONE_NEWNET) moves only the calling thread into the new namespace.
  if (::unshare(CLONE_NEWNET) != 0) return FailErrno("unshare(CLONE_NEWNET)");
  Result<UniqueFd> created = OpenThreadNetns();
  ReturnTo(original.get());
  if (!created) return std::unexpected(std::move(created).error());
  return NetNamespace(std::move(*created));
}

Result<ScopedNetnsEntry> ScopedNetnsEntry::Enter(int netns_fd) {
  KILN_ASSIGN_OR_RETURN(UniqueFd original, OpenThreadNetns());
  if (::setns(netns_fd, CLONE_NEWNET) != 0) return FailErrno("setns(CLONE_NEWNET)");
  return ScopedNetnsEntry(std::move(original));
}

ScopedNetnsEntry::~ScopedNetnsEntry() {
  if (original_) ReturnTo(original_.get());
}

Result<UniqueFd> SocketInNetns(int netns_fd, int domain, int type, int protocol) {
  return RunInNetns(netns_fd, [&]() -> Result<UniqueFd> {
    UniqueFd fd(::socket(domain, type, protocol));
    if (!fd) return FailErrno("socket in sandbox netns");
    return fd;
  });
}

}  // namespace kiln::kilnd::net
