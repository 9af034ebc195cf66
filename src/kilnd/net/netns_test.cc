#include "kilnd/net/netns.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <future>

#include "kilnd/net/rtnetlink.h"
#include "kilnd/net/test_support.h"

namespace kiln::kilnd::net {
namespace {

using testing::Addr;

// Inode of the namespace `fd` refers to (two fds name the same namespace iff equal).
ino_t NsInode(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

ino_t ThreadNsInode() {
  UniqueFd fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  return NsInode(fd.get());
}

TEST(NetNamespaceTest, CreateMakesANewNamespaceAndStaysHome) {
  KILN_REQUIRE_ROOT();
  ino_t home = ThreadNsInode();
  Result<NetNamespace> ns = NetNamespace::Create();
  ASSERT_TRUE(ns) << ns.error().message();
  EXPECT_NE(NsInode(ns->get()), home);
  EXPECT_EQ(ThreadNsInode(), home);
  Result<NetNamespace> current = NetNamespace::Current();
  ASSERT_TRUE(current);
  EXPECT_EQ(NsInode(current->get()), home);
}

TEST(ScopedNetnsEntryTest, EntersAndReturns) {
  KILN_REQUIRE_ROOT();
  ino_t home = ThreadNsInode();
  Result<NetNamespace> ns = NetNamespace::Create();
  ASSERT_TRUE(ns) << ns.error().message();
  // A thread that exists already (new threads inherit the creator's namespace) reads its
  // namespace while this one is inside.
  std::promise<void> entered;
  std::future<ino_t> other =
      std::async(std::launch::async, [&, f = entered.get_future()]() mutable {
        f.wait();
        return ThreadNsInode();
      });
  {
    Result<ScopedNetnsEntry> entry = ScopedNetnsEntry::Enter(ns->get());
    if (!entry) entered.set_value();
    ASSERT_TRUE(entry) << entry.error().message();
    EXPECT_EQ(ThreadNsInode(), NsInode(ns->get()));
    entered.set_value();
    EXPECT_EQ(other.get(), home);  // only the calling thread moved
  }
  EXPECT_EQ(ThreadNsInode(), home);
}

TEST(ScopedNetnsEntryTest, FailsCleanlyOnABadFd) {
  KILN_REQUIRE_ROOT();
  ino_t home = ThreadNsInode();
  UniqueFd not_a_netns(::open("/", O_RDONLY | O_CLOEXEC));
  Result<ScopedNetnsEntry> entry = ScopedNetnsEntry::Enter(not_a_netns.get());
  ASSERT_FALSE(entry);
  EXPECT_NE(entry.error().message().find("setns"), std::string::npos);
  EXPECT_EQ(ThreadNsInode(), home);
}

TEST(RunInNetnsTest, ReturnsHomeWhenTheWorkFails) {
  KILN_REQUIRE_ROOT();
  ino_t home = ThreadNsInode();
  Result<NetNamespace> ns = NetNamespace::Create();
  ASSERT_TRUE(ns);
  Status st = RunInNetns(ns->get(), []() -> Status { return Fail(Errc::kInternal, "boom"); });
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "boom");
  EXPECT_EQ(ThreadNsInode(), home);
}

TEST(SocketInNetnsTest, ReachesTheNamespacesOwnLoopback) {
  KILN_REQUIRE_ROOT();
  Result<NetNamespace> ns = NetNamespace::Create();
  ASSERT_TRUE(ns);
  Result<RtNetlink> nl = RtNetlink::OpenInNetns(ns->get());
  ASSERT_TRUE(nl) << nl.error().message();
  ASSERT_TRUE(nl->SetLinkUp(1));  // lo
  testing::Listener inside = testing::Listen(ns->get(), Addr("127.0.0.1"));
  ASSERT_NE(inside.port, 0);
  // The same port on the host's loopback is not that listener.
  testing::Connection from_host = testing::ConnectFrom(-1, Addr("127.0.0.1"), inside.port);
  EXPECT_TRUE(from_host.error != 0 || !testing::HasPendingConnection(inside));
  testing::Connection c = testing::ConnectFrom(ns->get(), Addr("127.0.0.1"), inside.port);
  EXPECT_EQ(c.error, 0) << std::strerror(c.error);
  EXPECT_EQ(testing::AcceptPeer(inside), Addr("127.0.0.1"));
}

TEST(SocketInNetnsTest, KeepsRequestedFlags) {
  KILN_REQUIRE_ROOT();
  Result<NetNamespace> ns = NetNamespace::Create();
  ASSERT_TRUE(ns);
  Result<UniqueFd> fd =
      SocketInNetns(ns->get(), AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_TRUE(::fcntl(fd->get(), F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC);
}

}  // namespace
}  // namespace kiln::kilnd::net
