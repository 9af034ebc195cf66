#pragma once

// A minimal rtnetlink client (NETLINK_ROUTE via libmnl) for what sandbox networking needs:
// veth pairs with the peer created inside another namespace, IPv4 addresses, link state and
// routes. No `ip` binary.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "kilnd/net/ipv4.h"

struct nlmsghdr;

namespace kiln::kilnd::net {

struct LinkInfo {
  int index = 0;
  std::string name;
  bool up = false;  // IFF_UP
};

// A NETLINK_ROUTE socket that acts on the network namespace it was opened in. Requests are
// queued with Queue*() and sent together by Commit() (one sendmsg); the kernel handles them in
// order and acknowledges each. The one-shot methods queue one request and commit it.
// Not thread-safe; cheap to open (one socket), so open one per operation.
class RtNetlink {
 public:
  // A socket in the calling thread's network namespace.
  static Result<RtNetlink> Open();
  // A socket in network namespace `netns_fd` (entered and left on the calling thread).
  static Result<RtNetlink> OpenInNetns(int netns_fd);

  RtNetlink(RtNetlink&&) = default;
  RtNetlink& operator=(RtNetlink&&) = default;

  // Queues a veth pair: `name` in this socket's namespace, its peer `peer_name` created
  // directly inside `peer_netns_fd` (IFLA_NET_NS_FD). Both ends start down.
  RtNetlink& QueueCreateVeth(std::string_view name, std::string_view peer_name, int peer_netns_fd);
  RtNetlink& QueueLinkUp(int ifindex);
  // `addr`/`prefix_len` on interface `ifindex` (which adds the connected route once it is up).
  RtNetlink& QueueAddress(int ifindex, Ipv4 addr, int prefix_len);
  // A route to `dest` through `gateway` (0.0.0.0/0: the default route).
  RtNetlink& QueueRoute(Ipv4Cidr dest, Ipv4 gateway);
  RtNetlink& QueueDeleteLink(int ifindex);
  // Queues a query of link `ifindex` whose answer is dropped. Answering it makes the kernel
  // apply the link's pending carrier change (linkwatch) first, so once Commit returns a link
  // brought up earlier in the batch passes traffic. Without it the first packets after bringing
  // a veth up can meet the no-op qdisc until the kernel's linkwatch work runs: on this host about
  // one attach in five lost its first SYN (a 1 s retransmit).
  RtNetlink& QueueSyncLinkState(int ifindex);

  // Sends everything queued and waits for every acknowledgement. Returns the first failure,
  // naming the request ("create veth kiln-3: File exists"); EEXIST maps to kAlreadyExists.
  // The queue is empty afterwards either way.
  Status Commit();

  Status CreateVeth(std::string_view name, std::string_view peer_name, int peer_netns_fd) {
    return QueueCreateVeth(name, peer_name, peer_netns_fd).Commit();
  }
  Status SetLinkUp(int ifindex) { return QueueLinkUp(ifindex).Commit(); }
  Status AddAddress(int ifindex, Ipv4 addr, int prefix_len) {
    return QueueAddress(ifindex, addr, prefix_len).Commit();
  }
  Status AddRoute(Ipv4Cidr dest, Ipv4 gateway) { return QueueRoute(dest, gateway).Commit(); }
  Status DeleteLink(int ifindex) { return QueueDeleteLink(ifindex).Commit(); }

  // Index of interface `name`; kNotFound when there is none. Sends at once (not queued).
  Result<int> LinkIndex(std::string_view name);
  // Every interface of the namespace. Sends at once (not queued).
  Result<std::vector<LinkInfo>> ListLinks();

 private:
  explicit RtNetlink(UniqueFd fd);
  // Starts a request of `type` at the end of the queue (room for kMaxRequest bytes), or
  // returns nullptr (and records the error for Commit) when the queue is full.
  struct nlmsghdr* Begin(uint16_t type, uint16_t flags, std::string what);
  // Closes the request started by Begin(): it becomes part of the batch.
  void End(struct nlmsghdr* nlh);
  // Sends the single request `nlh` and hands every reply message to `on_reply` until the
  // acknowledgement (or, for a dump, NLMSG_DONE) arrives.
  template <typename OnReply>
  Status Exchange(struct nlmsghdr* nlh, std::string_view what, OnReply&& on_reply);
  // Reads one datagram of replies into rx_; returns its length.
  Result<size_t> Receive(std::string_view what);

  UniqueFd fd_;
  uint32_t next_seq_ = 1;
  std::vector<char> queue_;           // the batch: nlmsghdr-aligned requests
  size_t used_ = 0;                   // bytes of queue_ in use
  std::vector<std::string> pending_;  // description of each queued request, in seq order
  uint32_t first_seq_ = 0;            // seq of pending_[0]
  std::string queue_error_;           // set when a request could not be queued
  std::vector<char> rx_;              // receive buffer, allocated on first use
};

}  // namespace kiln::kilnd::net
