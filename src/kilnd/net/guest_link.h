#pragma once

// The network link of a QEMU guest (vm runtime): a tap device inside the sandbox's network
// namespace. Every guest uses the same addresses (guest 10.0.2.2/24, gateway 10.0.2.1 = the tap)
// because each lives in its own namespace; the namespace routes between the tap and its `eth0`
// (the veth HostNetwork::Attach made), masquerading the guest behind the sandbox's own address,
// so the host's per-sandbox egress policy applies to the guest unchanged.
//
//   guest 10.0.2.2 ── tap0 10.0.2.1 [sandbox netns: forward + masquerade] eth0 10.201.x.y ── host

#include <string>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::kilnd::net {

struct GuestLinkConfig {
  // Name of the tap in the namespace: 1..15 characters of [A-Za-z0-9_.-].
  std::string ifname = "tap0";
  // The tap's address in the namespace, which is the guest's gateway; "a.b.c.d/n" (n 8..30).
  // Its prefix is the guest subnet.
  std::string host_cidr = "10.0.2.1/24";
  // Masquerade the guest subnet's traffic leaving through the namespace's `eth0` (the rule
  // matches by name, so it takes effect whenever `eth0` exists, also if it is attached later).
  bool masquerade = true;
};

// The name of the nftables table (family inet) CreateGuestLink installs in the namespace. One
// guest link per namespace: the table must not exist yet.
inline constexpr const char* kGuestTable = "kiln_guest";

// In network namespace `netns_fd` (not owned): creates the tap `config.ifname` (IFF_TAP |
// IFF_NO_PI, no vnet header, not persistent: it vanishes when the last fd of it closes),
// disables IPv6 on it, addresses it, brings it and `lo` up, turns on IPv4 forwarding in that
// namespace only, and installs table `inet kiln_guest` there, which
//   - masquerades the guest subnet's traffic leaving through `eth0` (config.masquerade),
//   - drops what arrives from the tap with a source outside the guest subnet or as IPv6,
//   - drops everything the guest sends to the namespace itself except UDP and TCP port 53 to
//     the gateway address (the DNS relay listens there) and replies (ct established/related).
// ARP is not IP and passes, so the guest resolves its gateway.
// Returns the tap's fd, close-on-exec and blocking; whoever holds it is the guest's wire (hand
// it to QEMU as `-netdev tap,fd=N`). The calling thread enters the namespace and returns to its
// own before this returns. Costs about 1 ms (median of 20 on this host). kInvalidArgument for a
// bad config; kAlreadyExists when the namespace already has an interface of that name; kInternal
// (from nftables) when it already has table `inet kiln_guest`. Needs CAP_NET_ADMIN and
// CAP_SYS_ADMIN (setns). The tap, the addresses and the table all vanish with the namespace.
Result<UniqueFd> CreateGuestLink(int netns_fd, const GuestLinkConfig& config);

// The nftables commands CreateGuestLink runs (exposed for tests): create table
// `inet kiln_guest` for tap `ifname`, gateway `gateway` in `subnet` ("10.0.2.0/24").
std::string GuestRuleset(const std::string& ifname, const std::string& gateway,
                         const std::string& subnet, bool masquerade);

}  // namespace kiln::kilnd::net
