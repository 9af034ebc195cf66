#pragma once

// Helpers for the privileged tests of kilnd/net (included only by *_test.cc files): sockets made
// in a namespace, connects with a guard deadline, fake peers in namespaces the test creates, and
// waits for the kernel's asynchronous namespace teardown.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "kilnd/net/ipv4.h"
#include "kilnd/net/netns.h"
#include "kilnd/net/nftables.h"
#include "kilnd/net/rtnetlink.h"

namespace kiln::kilnd::net::testing {

using std::chrono::milliseconds;

#define KILN_REQUIRE_ROOT()                                                   \
  do {                                                                        \
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, netlink)"; \
  } while (0)

inline Ipv4 Addr(std::string_view text) { return *ParseIpv4(text); }

inline sockaddr_in SockAddr(Ipv4 addr, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr = addr.ToInAddr();
  return sa;
}

// A TCP socket in `netns_fd` (-1: the calling thread's namespace).
inline UniqueFd TcpSocket(int netns_fd) {
  int type = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;
  if (netns_fd < 0) return UniqueFd(::socket(AF_INET, type, 0));
  Result<UniqueFd> fd = SocketInNetns(netns_fd, AF_INET, type, 0);
  EXPECT_TRUE(fd) << fd.error().message();
  return fd ? std::move(*fd) : UniqueFd();
}

struct Listener {
  UniqueFd fd;
  uint16_t port = 0;
};

// Listens on addr:<ephemeral port> inside `netns_fd` (-1: here).
inline Listener Listen(int netns_fd, Ipv4 addr) {
  Listener l;
  l.fd = TcpSocket(netns_fd);
  sockaddr_in sa = SockAddr(addr, 0);
  EXPECT_EQ(::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0)
      << "bind " << addr.ToString() << ": " << std::strerror(errno);
  EXPECT_EQ(::listen(l.fd.get(), 16), 0);
  socklen_t len = sizeof sa;
  ::getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  l.port = ntohs(sa.sin_port);
  return l;
}

struct Connection {
  int error = 0;  // 0 when connected, else the errno (ETIMEDOUT when the guard expired)
  UniqueFd fd;
  double ms = 0;  // how long it took
};

// Connects from a socket made in `netns_fd` to addr:port. `guard` only bounds a test that goes
// wrong: refused connections fail at once.
inline Connection ConnectFrom(int netns_fd, Ipv4 addr, uint16_t port,
                              milliseconds guard = milliseconds(3000), Ipv4 source = Ipv4{0}) {
  auto start = std::chrono::steady_clock::now();
  Connection c;
  c.fd = TcpSocket(netns_fd);
  if (source.value != 0) {
    sockaddr_in src = SockAddr(source, 0);
    if (::bind(c.fd.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      c.error = errno;
      return c;
    }
  }
  sockaddr_in sa = SockAddr(addr, port);
  if (::connect(c.fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    if (errno != EINPROGRESS) {
      c.error = errno;
    } else {
      pollfd p{c.fd.get(), POLLOUT, 0};
      int n = ::poll(&p, 1, static_cast<int>(guard.count()));
      if (n == 0) {
        c.error = ETIMEDOUT;
      } else {
        socklen_t len = sizeof c.error;
        ::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &c.error, &len);
      }
    }
  }
  c.ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return c;
}

struct Accepted {
  Ipv4 peer;  // 0 when no connection came
  UniqueFd conn;
};

// Accepts one connection within `guard`.
inline Accepted Accept(const Listener& l, milliseconds guard = milliseconds(3000)) {
  Accepted out;
  pollfd p{l.fd.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(guard.count())) != 1) return out;
  sockaddr_in peer{};
  socklen_t len = sizeof peer;
  out.conn.reset(::accept4(l.fd.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
  if (out.conn) out.peer = Ipv4{ntohl(peer.sin_addr.s_addr)};
  return out;
}

// Accepts one connection within `guard`, closes it and returns the peer's address.
inline Ipv4 AcceptPeer(const Listener& l, milliseconds guard = milliseconds(3000)) {
  return Accept(l, guard).peer;
}

// True when a connection is waiting on `l` right now.
inline bool HasPendingConnection(const Listener& l) {
  pollfd p{l.fd.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

// TCP segments received so far by namespace `netns_fd` (Tcp InSegs of /proc/net/snmp), or -1.
inline long TcpSegmentsReceived(int netns_fd) {
  Result<long> segs = RunInNetns(netns_fd, []() -> Result<long> {
    // thread-self: /proc/self/net would show the namespace of the main thread.
    UniqueFd fd(::open("/proc/thread-self/net/snmp", O_RDONLY | O_CLOEXEC));
    if (!fd) return FailErrno("open snmp");
    std::string text(16384, '\0');
    ssize_t n = ::read(fd.get(), text.data(), text.size());
    if (n <= 0) return FailErrno("read snmp");
    text.resize(static_cast<size_t>(n));
    // Two "Tcp:" lines: the field names, then the values.
    size_t names = text.find("\nTcp: ");
    size_t values = text.find("\nTcp: ", names + 1);
    if (names == std::string::npos || values == std::string::npos) {
      return Fail(Errc::kInternal, "no Tcp lines");
    }
    std::istringstream name_line(text.substr(names + 6, text.find('\n', names + 1) - names - 6));
    std::istringstream value_line(
        text.substr(values + 6, text.find('\n', values + 1) - values - 6));
    std::string name;
    long value = 0;
    while (name_line >> name && value_line >> value) {
      if (name == "InSegs") return value;
    }
    return Fail(Errc::kInternal, "no InSegs");
  });
  EXPECT_TRUE(segs) << segs.error().message();
  return segs ? *segs : -1;
}

// A namespace the test made, joined to the host namespace by a veth: `host_ifname` with
// `host_addr`/30 here, `eth0` with `peer_addr`/30 there. Plays "the internet", a private
// network or a metadata service. Everything goes away with the namespace.
struct FakePeer {
  NetNamespace ns;
  std::string host_ifname;
  Ipv4 host_addr;
  Ipv4 peer_addr;
};

// The kernel destroys network namespaces (and their veths) asynchronously, which takes
// seconds when many are torn down at once; the guard is only a deadline.
inline std::vector<std::string> WaitNoLinksWithPrefix(std::string_view prefix,
                                                      milliseconds guard = milliseconds(30000));

inline Result<FakePeer> MakeFakePeer(std::string host_ifname, Ipv4 host_addr, Ipv4 peer_addr) {
  // The namespace of an earlier run may still be on its way out (the kernel destroys them
  // asynchronously), taking its veth with it.
  if (!WaitNoLinksWithPrefix(host_ifname).empty()) {
    return Fail(Errc::kAlreadyExists, "interface " + host_ifname + " exists");
  }
  FakePeer peer{NetNamespace(), std::move(host_ifname), host_addr, peer_addr};
  KILN_ASSIGN_OR_RETURN(peer.ns, NetNamespace::Create());
  KILN_ASSIGN_OR_RETURN(RtNetlink host, RtNetlink::Open());
  KILN_TRY(host.CreateVeth(peer.host_ifname, "eth0", peer.ns.get()));
  KILN_ASSIGN_OR_RETURN(int host_index, host.LinkIndex(peer.host_ifname));
  KILN_TRY(host.QueueAddress(host_index, host_addr, 30).QueueLinkUp(host_index).Commit());
  KILN_ASSIGN_OR_RETURN(RtNetlink inner, RtNetlink::OpenInNetns(peer.ns.get()));
  KILN_ASSIGN_OR_RETURN(int eth0, inner.LinkIndex("eth0"));
  KILN_TRY(inner.QueueLinkUp(1)
               .QueueAddress(eth0, peer_addr, 30)
               .QueueLinkUp(eth0)
               .QueueSyncLinkState(eth0)
               .Commit());
  KILN_TRY(host.QueueSyncLinkState(host_index).Commit());
  return peer;
}

// Names of the host namespace's interfaces that start with `prefix`.
inline std::vector<std::string> LinksWithPrefix(std::string_view prefix) {
  std::vector<std::string> out;
  Result<RtNetlink> nl = RtNetlink::Open();
  if (!nl) return {"<netlink: " + nl.error().message() + ">"};
  Result<std::vector<LinkInfo>> links = nl->ListLinks();
  if (!links) return {"<list: " + links.error().message() + ">"};
  for (const LinkInfo& link : *links) {
    if (link.name.starts_with(prefix)) out.push_back(link.name);
  }
  return out;
}

// Waits (on rtnetlink link notifications, not sleeps) until no host interface starts with
// `prefix`; returns the ones still there when `guard` expires.
inline std::vector<std::string> WaitNoLinksWithPrefix(std::string_view prefix, milliseconds guard) {
  UniqueFd monitor(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE));
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = RTMGRP_LINK;
  ::bind(monitor.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  auto deadline = std::chrono::steady_clock::now() + guard;
  for (;;) {
    std::vector<std::string> left = LinksWithPrefix(prefix);
    auto now = std::chrono::steady_clock::now();
    if (left.empty() || now >= deadline) return left;
    pollfd p{monitor.get(), POLLIN, 0};
    auto wait = std::chrono::duration_cast<milliseconds>(deadline - now).count();
    ::poll(&p, 1, static_cast<int>(wait) + 1);
    char buf[16384];
    while (::recv(monitor.get(), buf, sizeof buf, 0) > 0) {
    }
  }
}

// Whether nftables has table `inet <name>`.
inline bool TableExists(const std::string& name) {
  Result<NftContext> nft = NftContext::Create();
  if (!nft) return false;
  return static_cast<bool>(nft->Query("list table inet " + name + "\n"));
}

}  // namespace kiln::kilnd::net::testing
