#include "kilnd/net/host_network.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <thread>

#include "base/scope_exit.h"
#include "kilnd/net/netns.h"
#include "kilnd/net/nftables.h"
#include "kilnd/net/test_support.h"

namespace kiln::kilnd::net {
namespace {

using std::chrono::milliseconds;
using testing::Addr;
using testing::ConnectFrom;
using testing::Connection;
using testing::FakePeer;
using testing::Listen;
using testing::Listener;

// Every test gets its own instance name, sandbox subnet and fake-peer addresses, so tests (and
// other kilnd instances) never share a table, an interface or a route. The topology lives in
// namespaces the test creates; traffic goes only to them and to this host's own addresses.
class HostNetworkTest : public ::testing::Test {
 protected:
  // `k` (1..15) picks name kntest<k>, subnet 10.(240+k).0.0/16, fake internet 203.0.113.4k/30
  // and a private network 10.99.k.0/30.
  void Init(int k, std::string subnet = "") {
    k_ = k;
    config_.name = "kntest" + std::to_string(k);
    config_.subnet = subnet.empty() ? "10." + std::to_string(240 + k) + ".0.0/16" : subnet;
    ASSERT_TRUE(HostNetwork::RemoveLeftovers(config_.name));
    Result<std::unique_ptr<HostNetwork>> network = HostNetwork::Setup(config_);
    ASSERT_TRUE(network) << network.error().message();
    network_ = std::move(*network);
  }

  // The test's namespaces are closed by now; their veths (sandboxes' and fake peers') must go
  // with them, and the table with the HostNetwork.
  void TearDown() override {
    network_.reset();
    if (config_.name.empty()) return;
    EXPECT_FALSE(testing::TableExists(config_.name));
    (void)HostNetwork::RemoveLeftovers(config_.name);
    for (const char* suffix : {"-", "i", "p", "m"}) {
      std::vector<std::string> left = testing::WaitNoLinksWithPrefix(config_.name + suffix);
      EXPECT_TRUE(left.empty()) << left.front();
    }
  }

  // A new namespace attached as a sandbox.
  struct Sandbox {
    NetNamespace ns;
    std::unique_ptr<SandboxLink> link;
    Ipv4 address() const { return Addr(link->sandbox_address()); }
  };
  Sandbox Attach(bool internet) {
    Sandbox s;
    Result<NetNamespace> ns = NetNamespace::Create();
    EXPECT_TRUE(ns) << ns.error().message();
    if (!ns) return s;
    s.ns = std::move(*ns);
    Result<std::unique_ptr<SandboxLink>> link = network_->Attach(s.ns.get(), internet);
    EXPECT_TRUE(link) << link.error().message();
    if (link) s.link = std::move(*link);
    return s;
  }

  // "The internet": a namespace behind host interface kntest<k>i at 203.0.113.(4k+2).
  FakePeer Internet() {
    return Peer("i", Ipv4{Addr("203.0.113.0").value + 4 * static_cast<uint32_t>(k_) + 1},
                Ipv4{Addr("203.0.113.0").value + 4 * static_cast<uint32_t>(k_) + 2});
  }
  FakePeer Peer(const std::string& suffix, Ipv4 host_addr, Ipv4 peer_addr) {
    Result<FakePeer> peer = testing::MakeFakePeer(config_.name + suffix, host_addr, peer_addr);
    EXPECT_TRUE(peer) << peer.error().message();
    return peer ? std::move(*peer) : FakePeer{};
  }

  int k_ = 0;
  NetworkConfig config_;
  std::unique_ptr<HostNetwork> network_;
};

// Refused at once (tcp reset from the deny chain), not dropped until a timeout.
void ExpectRefusedFast(const Connection& c, const std::string& what) {
  EXPECT_EQ(c.error, ECONNREFUSED) << what << ": " << std::strerror(c.error);
  EXPECT_LT(c.ms, 1000) << what;
}

TEST(HostNetworkConfigTest, RejectsBadConfigs) {
  for (const char* name : {"", "Kiln", "9kiln", "ki-ln", "kiln.x", "averyveryverylongname"}) {
    NetworkConfig config;
    config.name = name;
    Result<std::unique_ptr<HostNetwork>> n = HostNetwork::Setup(config);
    ASSERT_FALSE(n) << name;
    EXPECT_EQ(n.error().code(), Errc::kInvalidArgument) << name;
  }
  NetworkConfig extra;
  extra.blocked_extra = {"192.0.2.0/24", "192.0.2.1"};
  Result<std::unique_ptr<HostNetwork>> bad_extra = HostNetwork::Setup(extra);
  ASSERT_FALSE(bad_extra);
  EXPECT_NE(bad_extra.error().message().find("blocked_extra"), std::string::npos);
  for (const char* subnet : {"10.0.0.0", "10.0.0.0/31", "10.0.0.0/4", "10.0.0.1/16", "x/16"}) {
    NetworkConfig config;
    config.subnet = subnet;
    Result<std::unique_ptr<HostNetwork>> n = HostNetwork::Setup(config);
    ASSERT_FALSE(n) << subnet;
    EXPECT_EQ(n.error().code(), Errc::kInvalidArgument) << subnet;
  }
  // `<name>-<last slot>` must fit in an interface name: 9 characters + "-" + 5 digits is 15.
  NetworkConfig tight;
  tight.name = "abcdefghij";
  EXPECT_FALSE(HostNetwork::Setup(tight));
  EXPECT_FALSE(HostNetwork::RemoveLeftovers("bad name"));
}

TEST_F(HostNetworkTest, SetupReplacesLeftoverAndDestructorRemovesTable) {
  KILN_REQUIRE_ROOT();
  Init(1);
  // A leftover of a previous run with something that must not survive.
  network_.reset();
  Result<NftContext> nft = NftContext::Create();
  ASSERT_TRUE(nft);
  ASSERT_TRUE(nft->Run("add table inet kntest1\nadd chain inet kntest1 stale\n"));
  Result<std::unique_ptr<HostNetwork>> network = HostNetwork::Setup(config_);
  ASSERT_TRUE(network) << network.error().message();
  Result<std::string> listing = nft->Query("list table inet kntest1\n");
  ASSERT_TRUE(listing) << listing.error().message();
  EXPECT_EQ(listing->find("stale"), std::string::npos) << *listing;
  EXPECT_NE(listing->find("masquerade"), std::string::npos) << *listing;
  char forward = 0;
  UniqueFd fd(::open("/proc/sys/net/ipv4/ip_forward", O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::read(fd.get(), &forward, 1), 1);
  EXPECT_EQ(forward, '1');
  network->reset();
  EXPECT_FALSE(testing::TableExists("kntest1"));
}

TEST_F(HostNetworkTest, RemoveLeftoversDeletesATableAndToleratesNone) {
  KILN_REQUIRE_ROOT();
  Result<NftContext> nft = NftContext::Create();
  ASSERT_TRUE(nft);
  ASSERT_TRUE(nft->Run("add table inet kntest2\n"));
  ASSERT_TRUE(testing::TableExists("kntest2"));
  ASSERT_TRUE(HostNetwork::RemoveLeftovers("kntest2"));
  EXPECT_FALSE(testing::TableExists("kntest2"));
  EXPECT_TRUE(HostNetwork::RemoveLeftovers("kntest2"));
}

TEST_F(HostNetworkTest, SandboxReachesInternetMasqueraded) {
  KILN_REQUIRE_ROOT();
  Init(3);
  FakePeer inet = Internet();
  ASSERT_TRUE(inet.ns);
  Sandbox sbx = Attach(/*internet=*/true);
  ASSERT_TRUE(sbx.link);
  EXPECT_EQ(sbx.link->host_ifname().rfind("kntest3-", 0), 0u);
  EXPECT_TRUE(Ipv4Cidr(*ParseIpv4Cidr(config_.subnet)).Contains(sbx.address()));
  EXPECT_EQ(sbx.address().value, Addr(sbx.link->host_address()).value + 1);
  Listener server = Listen(inet.ns.get(), inet.peer_addr);
  Connection c = ConnectFrom(sbx.ns.get(), inet.peer_addr, server.port);
  ASSERT_EQ(c.error, 0) << std::strerror(c.error);
  // The fake internet has no route to the sandbox subnet: it sees the host's address.
  EXPECT_EQ(testing::AcceptPeer(server), inet.host_addr);
}

// What the ns runtime does: the network namespace belongs to the sandbox's user namespace
// (clone with CLONE_NEWUSER | CLONE_NEWNET), whose root could reconfigure it.
TEST_F(HostNetworkTest, AttachesANamespaceOwnedByAUserNamespace) {
  KILN_REQUIRE_ROOT();
  Init(16, "10.238.0.0/16");
  int ready[2], done[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(done, O_CLOEXEC), 0);
  UniqueFd ready_r(ready[0]), ready_w(ready[1]), done_r(done[0]), done_w(done[1]);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only async-signal-safe calls between fork and _exit. Without its copy of the write end,
    // the read below ends when the parent closes `done` (or dies).
    ::close(done[1]);
    char c = ::unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    (void)!::read(done[0], &c, 1);
    ::_exit(0);
  }
  ScopeExit reap([&] {
    done_w.reset();
    ::waitpid(child, nullptr, 0);
  });
  char c = 0;
  ASSERT_EQ(::read(ready_r.get(), &c, 1), 1);
  ASSERT_EQ(c, 'y');
  std::string path = "/proc/" + std::to_string(child) + "/ns/net";
  NetNamespace ns(UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)));
  ASSERT_TRUE(ns);
  std::string user_path = "/proc/" + std::to_string(child) + "/ns/user";
  char own[64] = {}, theirs[64] = {};
  ASSERT_GT(::readlink("/proc/self/ns/user", own, sizeof own - 1), 0);
  ASSERT_GT(::readlink(user_path.c_str(), theirs, sizeof theirs - 1), 0);
  EXPECT_STRNE(own, theirs);

  FakePeer inet = Internet();
  ASSERT_TRUE(inet.ns);
  Listener server = Listen(inet.ns.get(), inet.peer_addr);
  Result<std::unique_ptr<SandboxLink>> link = network_->Attach(ns.get(), true);
  ASSERT_TRUE(link) << link.error().message();
  Connection conn = ConnectFrom(ns.get(), inet.peer_addr, server.port);
  EXPECT_EQ(conn.error, 0) << std::strerror(conn.error);
  EXPECT_EQ(testing::AcceptPeer(server), inet.host_addr);
}

TEST_F(HostNetworkTest, InternetCanBeBlockedAndAllowed) {
  KILN_REQUIRE_ROOT();
  Init(4);
  FakePeer inet = Internet();
  ASSERT_TRUE(inet.ns);
  Listener server = Listen(inet.ns.get(), inet.peer_addr);
  Sandbox sbx = Attach(/*internet=*/false);
  ASSERT_TRUE(sbx.link);
  EXPECT_FALSE(sbx.link->internet());
  ExpectRefusedFast(ConnectFrom(sbx.ns.get(), inet.peer_addr, server.port), "internet=false");
  EXPECT_FALSE(testing::HasPendingConnection(server));

  ASSERT_TRUE(sbx.link->SetInternet(true));
  Connection open = ConnectFrom(sbx.ns.get(), inet.peer_addr, server.port);
  ASSERT_EQ(open.error, 0) << std::strerror(open.error);
  testing::Accepted accepted = testing::Accept(server);
  EXPECT_EQ(accepted.peer, inet.host_addr);

  // Blocking cuts the open connection too: its next segment is answered with a reset.
  ASSERT_TRUE(sbx.link->SetInternet(false));
  ASSERT_TRUE(sbx.link->SetInternet(false));  // idempotent
  EXPECT_EQ(::send(open.fd.get(), "x", 1, MSG_NOSIGNAL), 1);
  pollfd p{open.fd.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 3000), 1);
  char byte;
  EXPECT_EQ(::recv(open.fd.get(), &byte, 1, 0), -1);
  EXPECT_EQ(errno, ECONNRESET);
  ExpectRefusedFast(ConnectFrom(sbx.ns.get(), inet.peer_addr, server.port), "after SetInternet");
}

TEST_F(HostNetworkTest, HostServicesAreUnreachable) {
  KILN_REQUIRE_ROOT();
  Init(5);
  FakePeer inet = Internet();
  ASSERT_TRUE(inet.ns);
  Sandbox sbx = Attach(/*internet=*/true);
  ASSERT_TRUE(sbx.link);
  Ipv4 host_side = Addr(sbx.link->host_address());
  Listener on_loopback = Listen(-1, Addr("127.0.0.1"));
  Listener on_veth = Listen(-1, host_side);
  Listener on_other = Listen(-1, inet.host_addr);  // another address of the host
  // The sandbox's 127.0.0.1 is its own loopback.
  Connection lo = ConnectFrom(sbx.ns.get(), Addr("127.0.0.1"), on_loopback.port);
  EXPECT_EQ(lo.error, ECONNREFUSED);
  ExpectRefusedFast(ConnectFrom(sbx.ns.get(), host_side, on_veth.port), "host side of the veth");
  ExpectRefusedFast(ConnectFrom(sbx.ns.get(), inet.host_addr, on_other.port), "other host address");
  ExpectRefusedFast(ConnectFrom(sbx.ns.get(), host_side, on_loopback.port), "host loopback port");
  EXPECT_FALSE(testing::HasPendingConnection(on_loopback));
  EXPECT_FALSE(testing::HasPendingConnection(on_veth));
  EXPECT_FALSE(testing::HasPendingConnection(on_other));
  // The host itself may connect to its services (controls that the listeners work).
  EXPECT_EQ(ConnectFrom(-1, host_side, on_veth.port).error, 0);
}

TEST_F(HostNetworkTest, SandboxesCannotReachEachOther) {
  KILN_REQUIRE_ROOT();
  // A subnet outside the blocked ranges (benchmarking, RFC 2544), so that the rule against the
  // sandbox subnet itself is what separates them.
  Init(6, "198.18.6.0/24");
  Sandbox a = Attach(/*internet=*/true);
  Sandbox b = Attach(/*internet=*/true);
  ASSERT_TRUE(a.link && b.link);
  EXPECT_NE(a.address(), b.address());
  EXPECT_NE(a.link->host_ifname(), b.link->host_ifname());
  Listener in_b = Listen(b.ns.get(), Addr("0.0.0.0"));
  ExpectRefusedFast(ConnectFrom(a.ns.get(), b.address(), in_b.port), "sandbox a -> b");
  ExpectRefusedFast(ConnectFrom(b.ns.get(), a.address(), in_b.port), "sandbox b -> a");
  EXPECT_FALSE(testing::HasPendingConnection(in_b));
  // kilnd reaches a sandbox's own loopback with a socket made in its namespace.
  Connection local = ConnectFrom(b.ns.get(), Addr("127.0.0.1"), in_b.port);
  EXPECT_EQ(local.error, 0) << std::strerror(local.error);
  EXPECT_EQ(testing::AcceptPeer(in_b), Addr("127.0.0.1"));
}

TEST_F(HostNetworkTest, PrivateAndMetadataAddressesAreUnreachable) {
  KILN_REQUIRE_ROOT();
  Init(7);
  FakePeer priv = Peer("p", Addr("10.99.7.2"), Addr("10.99.7.1"));
  FakePeer meta = Peer("m", Addr("169.254.169.253"), Addr("169.254.169.254"));
  ASSERT_TRUE(priv.ns && meta.ns);
  Listener priv_server = Listen(priv.ns.get(), priv.peer_addr);
  Listener meta_server = Listen(meta.ns.get(), meta.peer_addr);
  // Controls: the host reaches both, so only the sandbox rules stand in the way.
  ASSERT_EQ(ConnectFrom(-1, priv.peer_addr, priv_server.port).error, 0);
  ASSERT_EQ(testing::AcceptPeer(priv_server), priv.host_addr);
  ASSERT_EQ(ConnectFrom(-1, meta.peer_addr, meta_server.port).error, 0);
  ASSERT_EQ(testing::AcceptPeer(meta_server), meta.host_addr);

  Sandbox sbx = Attach(/*internet=*/true);
  ASSERT_TRUE(sbx.link);
  ExpectRefusedFast(ConnectFrom(sbx.ns.get(), priv.peer_addr, priv_server.port), "10.99.7.1");
  ExpectRefusedFast(ConnectFrom(sbx.ns.get(), meta.peer_addr, meta_server.port), "169.254.169.254");
  EXPECT_FALSE(testing::HasPendingConnection(priv_server));
  EXPECT_FALSE(testing::HasPendingConnection(meta_server));
}

TEST_F(HostNetworkTest, ExtraBlockedPrefixesAreUnreachable) {
  KILN_REQUIRE_ROOT();
  config_.blocked_extra = {"198.51.100.0/24"};  // say, the host's LAN
  Init(18, "10.236.0.0/16");
  FakePeer lan = Peer("p", Addr("198.51.100.182"), Addr("198.51.100.181"));
  ASSERT_TRUE(lan.ns);
  Listener server = Listen(lan.ns.get(), lan.peer_addr);
  Sandbox sbx = Attach(/*internet=*/true);
  ASSERT_TRUE(sbx.link);
  ExpectRefusedFast(ConnectFrom(sbx.ns.get(), lan.peer_addr, server.port), "blocked_extra");
  EXPECT_FALSE(testing::HasPendingConnection(server));
}

TEST_F(HostNetworkTest, SpoofedSourceAddressesAreDropped) {
  KILN_REQUIRE_ROOT();
  Init(8);
  FakePeer inet = Internet();
  ASSERT_TRUE(inet.ns);
  Listener server = Listen(inet.ns.get(), inet.peer_addr);
  Sandbox blocked = Attach(/*internet=*/false);
  Sandbox other = Attach(/*internet=*/true);
  ASSERT_TRUE(blocked.link && other.link);
  // The blocked sandbox's root gives itself the other sandbox's address and one outside the
  // subnet, then tries to get out with them.
  Result<RtNetlink> nl = RtNetlink::OpenInNetns(blocked.ns.get());
  ASSERT_TRUE(nl);
  Result<int> eth0 = nl->LinkIndex("eth0");
  ASSERT_TRUE(eth0);
  ASSERT_TRUE(nl->QueueAddress(*eth0, other.address(), 32)
                  .QueueAddress(*eth0, Addr("198.51.100.77"), 32)
                  .Commit());
  // Dropped packets give no answer, so the guard runs out; what matters is that not a single
  // segment reached the fake internet.
  long before = testing::TcpSegmentsReceived(inet.ns.get());
  for (Ipv4 spoofed : {other.address(), Addr("198.51.100.77")}) {
    Connection c =
        ConnectFrom(blocked.ns.get(), inet.peer_addr, server.port, milliseconds(300), spoofed);
    EXPECT_NE(c.error, 0) << spoofed.ToString();
  }
  EXPECT_EQ(testing::TcpSegmentsReceived(inet.ns.get()), before);
  EXPECT_FALSE(testing::HasPendingConnection(server));
  // Its own address stays blocked, while the real owner of the other address gets out.
  ExpectRefusedFast(ConnectFrom(blocked.ns.get(), inet.peer_addr, server.port), "blocked");
  EXPECT_EQ(ConnectFrom(other.ns.get(), inet.peer_addr, server.port).error, 0);
  EXPECT_GT(testing::TcpSegmentsReceived(inet.ns.get()), before);
}

TEST_F(HostNetworkTest, SandboxHasNoIpv6) {
  KILN_REQUIRE_ROOT();
  Init(9);
  Sandbox sbx = Attach(/*internet=*/true);
  ASSERT_TRUE(sbx.link);
  Result<std::string> values = RunInNetns(sbx.ns.get(), []() -> Result<std::string> {
    std::string out;
    for (const char* dev : {"all", "lo", "eth0"}) {
      std::string path = std::string("/proc/sys/net/ipv6/conf/") + dev + "/disable_ipv6";
      UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      char c = '?';
      if (!fd || ::read(fd.get(), &c, 1) != 1) return FailErrno(path);
      out += c;
    }
    return out;
  });
  ASSERT_TRUE(values) << values.error().message();
  EXPECT_EQ(*values, "111");
}

TEST_F(HostNetworkTest, BusySlotIsSkippedAndFullSubnetIsReported) {
  KILN_REQUIRE_ROOT();
  // A /28 has four slots.
  config_.name = "kntest10";
  config_.subnet = "10.250.0.0/28";
  Result<std::unique_ptr<HostNetwork>> network = HostNetwork::Setup(config_);
  ASSERT_TRUE(network) << network.error().message();
  network_ = std::move(*network);
  std::vector<Sandbox> sandboxes;
  for (int i = 0; i < 4; ++i) {
    sandboxes.push_back(Attach(true));
    ASSERT_TRUE(sandboxes.back().link);
  }
  Result<NetNamespace> spare = NetNamespace::Create();
  ASSERT_TRUE(spare);
  Result<std::unique_ptr<SandboxLink>> full = network_->Attach(spare->get(), true);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), Errc::kResourceExhausted) << full.error().message();

  // Slot 0 is free again, but its namespace (and so its veth) still lives: it must be skipped,
  // not handed out with a name and routes that clash.
  std::string busy = sandboxes[0].link->host_ifname();
  sandboxes[0].link.reset();
  full = network_->Attach(spare->get(), true);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), Errc::kResourceExhausted) << full.error().message();

  // Once the namespace is gone (asynchronously), the slot can be used.
  sandboxes[0].ns.reset();
  EXPECT_TRUE(testing::WaitNoLinksWithPrefix(busy).empty());
  Result<std::unique_ptr<SandboxLink>> reused = network_->Attach(spare->get(), true);
  ASSERT_TRUE(reused) << reused.error().message();
  EXPECT_EQ((*reused)->host_ifname(), busy);
}

TEST_F(HostNetworkTest, NamespaceWithAnEth0IsRefusedAndLeavesNothing) {
  KILN_REQUIRE_ROOT();
  Init(11);
  Result<NetNamespace> ns = NetNamespace::Create();
  ASSERT_TRUE(ns);
  Result<RtNetlink> nl = RtNetlink::OpenInNetns(ns->get());
  ASSERT_TRUE(nl);
  ASSERT_TRUE(nl->CreateVeth("eth0", "other0", ns->get()));
  Result<std::unique_ptr<SandboxLink>> link = network_->Attach(ns->get(), false);
  ASSERT_FALSE(link);
  EXPECT_EQ(link.error().code(), Errc::kAlreadyExists) << link.error().message();
  EXPECT_TRUE(testing::LinksWithPrefix("kntest11-").empty());
  // A bad fd is an error, not a crash, and leaves the thread where it was.
  Result<std::unique_ptr<SandboxLink>> bad = network_->Attach(-1, true);
  EXPECT_FALSE(bad);
  Sandbox ok = Attach(true);
  EXPECT_TRUE(ok.link);
}

TEST_F(HostNetworkTest, NothingRemainsAfterTeardown) {
  KILN_REQUIRE_ROOT();
  Init(12);
  {
    Sandbox a = Attach(true);
    Sandbox b = Attach(false);
    Sandbox c = Attach(false);
    ASSERT_TRUE(a.link && b.link && c.link);
    EXPECT_EQ(testing::LinksWithPrefix("kntest12-").size(), 3u);
    Result<NftContext> nft = NftContext::Create();
    ASSERT_TRUE(nft);
    Result<std::string> set = nft->Query("list set inet kntest12 no_internet\n");
    ASSERT_TRUE(set) << set.error().message();
    EXPECT_NE(set->find(b.link->sandbox_address()), std::string::npos) << *set;
    std::string c_address = c.link->sandbox_address();
    c.link.reset();  // its set element goes with it
    set = nft->Query("list set inet kntest12 no_internet\n");
    ASSERT_TRUE(set);
    EXPECT_EQ(set->find(c_address), std::string::npos) << *set;
    // Links may outlive their HostNetwork (b's destructor runs after this reset).
    network_.reset();
    EXPECT_FALSE(b.link->SetInternet(true));
  }
  EXPECT_FALSE(testing::TableExists("kntest12"));
  std::vector<std::string> left = testing::WaitNoLinksWithPrefix("kntest12-");
  EXPECT_TRUE(left.empty()) << left.front();
}

TEST_F(HostNetworkTest, ConcurrentAttachesGetDistinctSlots) {
  KILN_REQUIRE_ROOT();
  Init(13);
  constexpr int kThreads = 4, kEach = 8;
  std::vector<std::vector<Sandbox>> per_thread(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) per_thread[t].push_back(Attach(i % 2 == 0));
    });
  }
  for (std::thread& th : threads) th.join();
  std::set<std::string> addresses, names;
  for (const auto& list : per_thread) {
    for (const Sandbox& s : list) {
      ASSERT_TRUE(s.link);
      addresses.insert(s.link->sandbox_address());
      names.insert(s.link->host_ifname());
    }
  }
  EXPECT_EQ(addresses.size(), size_t{kThreads * kEach});
  EXPECT_EQ(names.size(), size_t{kThreads * kEach});
}

// Right after Attach the veth passes traffic: the first SYN is not dropped while the kernel
// activates the link (which would cost a 1 s retransmit).
TEST_F(HostNetworkTest, FirstPacketAfterAttachGetsThrough) {
  KILN_REQUIRE_ROOT();
  Init(15);
  for (int i = 0; i < 20; ++i) {
    Sandbox sbx = Attach(true);
    ASSERT_TRUE(sbx.link);
    // Refused by the host at once, so the SYN went out and the reset came back.
    Connection c = ConnectFrom(sbx.ns.get(), Addr(sbx.link->host_address()), 9);
    EXPECT_EQ(c.error, ECONNREFUSED) << std::strerror(c.error);
    EXPECT_LT(c.ms, 500) << "attach " << i;
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
double P90(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() * 9 / 10];
}

// Not asserted: logs what Attach costs (target: about 1 ms, measured-host.md section 2.1).
TEST_F(HostNetworkTest, AttachTiming) {
  KILN_REQUIRE_ROOT();
  Init(14);
  using Clock = std::chrono::steady_clock;
  auto ms_since = [](Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };
  std::vector<Sandbox> sandboxes;
  std::vector<double> create_ns, with_internet, without_internet;
  for (int i = 0; i < 70; ++i) {
    Sandbox s;
    auto t0 = Clock::now();
    Result<NetNamespace> ns = NetNamespace::Create();
    ASSERT_TRUE(ns);
    create_ns.push_back(ms_since(t0));
    s.ns = std::move(*ns);
    bool internet = i < 50;
    auto t1 = Clock::now();
    Result<std::unique_ptr<SandboxLink>> link = network_->Attach(s.ns.get(), internet);
    (internet ? with_internet : without_internet).push_back(ms_since(t1));
    ASSERT_TRUE(link) << link.error().message();
    s.link = std::move(*link);
    sandboxes.push_back(std::move(s));
  }
  auto t2 = Clock::now();
  sandboxes.clear();
  std::vector<std::string> left = testing::WaitNoLinksWithPrefix("kntest14-");
  double teardown = ms_since(t2);
  EXPECT_TRUE(left.empty());
  std::printf(
      "[ timing   ] netns create median %.3f ms; Attach(internet) median %.3f ms p90 %.3f ms "
      "(n=%zu); Attach(no internet) median %.3f ms p90 %.3f ms (n=%zu); teardown of %d: "
      "%.1f ms\n",
      Median(create_ns), Median(with_internet), P90(with_internet), with_internet.size(),
      Median(without_internet), P90(without_internet), without_internet.size(), 70, teardown);
  RecordProperty("attach_internet_median_us", static_cast<int>(Median(with_internet) * 1000));
  RecordProperty("attach_no_internet_median_us", static_cast<int>(Median(without_internet) * 1000));
}

}  // namespace
}  // namespace kiln::kilnd::net
