#pragma once

// Sandbox networking on the host (DESIGN.md §4.1 "network"): every sandbox gets its own
// network namespace joined to the host by a veth pair with a /30 of the sandbox subnet.
// nftables masquerades its traffic to the internet and blocks everything else it could reach:
// the host itself, loopback, link-local/metadata, private and multicast ranges and other
// sandboxes. A sandbox without internet access reaches nothing at all.
//
// Costs were chosen from measurements (measured-host.md §2.1): the ruleset is written once in
// Setup and matches sandbox veths by name prefix and the subnet, so attaching a sandbox with
// internet access never touches nftables (one set element is added for one without); veths
// are never deleted one by one (~32 ms each) but vanish with their namespace.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "kilnd/net/ipv4.h"

namespace kiln::kilnd::net {

struct NetworkConfig {
  // Instance name: the nftables table is `inet <name>`, host-side veths are `<name>-<slot>`.
  // 1+ characters of [a-z0-9_] starting with a letter, short enough that `<name>-<last slot>`
  // fits in 15 characters. Several instances (e.g. tests) can run side by side with distinct
  // names and subnets.
  std::string name = "kiln";
  // IPv4 subnet the sandboxes' /30 slots come from (prefix length 8..30): slot i is the i-th
  // /30; its first address (.1 of slot 0) is the host side, the second (.2) the sandbox.
  std::string subnet = "10.201.0.0/16";
  // More IPv4 prefixes sandboxes may not reach, on top of the built-in special-purpose ranges
  // (loopback, private, CGNAT, link-local, multicast, reserved): typically the host's own LAN
  // when it uses public addresses, e.g. {"192.0.2.0/24"}.
  std::vector<std::string> blocked_extra;
};

class SandboxLink;

// The host side of sandbox networking; one per kilnd. Thread-safe: Attach and the methods of
// SandboxLink may be called from several threads at once. Its links may outlive it (their
// destructors then have nothing left to undo in nftables).
class HostNetwork {
 public:
  // Creates the nftables table `inet <name>`, replacing a leftover of the same name in the
  // same transaction, and turns on IPv4 forwarding for the host. kInvalidArgument for a bad
  // config. The calling thread must be in the host's network namespace.
  static Result<std::unique_ptr<HostNetwork>> Setup(const NetworkConfig& config);

  // Deletes table `inet <name>` if it exists: what a previous instance that died (SIGKILL)
  // left behind. Its veths went away with their namespaces.
  static Status RemoveLeftovers(const std::string& name);

  HostNetwork(const HostNetwork&) = delete;
  HostNetwork& operator=(const HostNetwork&) = delete;
  // Deletes the nftables table. IPv4 forwarding stays on.
  ~HostNetwork();

  // Connects the network namespace `netns_fd` (e.g. an fd of /proc/<pid>/ns/net; not owned,
  // not kept): allocates a /30, creates `<name>-<slot>` here with peer `eth0` inside the
  // namespace, addresses both ends, brings up both and `lo`, routes the namespace's default
  // through the host side and disables IPv6 in it. Without `internet` the sandbox reaches
  // nothing beyond its veth. The calling thread briefly enters the namespace (setns) and
  // always returns. kResourceExhausted when the subnet is full; kAlreadyExists when the
  // namespace already has an `eth0`.
  Result<std::unique_ptr<SandboxLink>> Attach(int netns_fd, bool internet);

  const NetworkConfig& config() const;
  // "<name>-": the prefix of every host-side sandbox veth.
  std::string ifname_prefix() const;

  struct State;  // shared with the links; defined in host_network.cc

 private:
  explicit HostNetwork(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

// One sandbox's place in the host network: its /30 slot and, without internet access, its
// entry in the nftables set `no_internet`. The destructor removes that entry and frees the
// slot. It does not delete the veth: that goes with the sandbox's network namespace, so destroy
// a link only once the sandbox's processes are gone (else a still-running sandbox would keep
// its veth and, having lost its `no_internet` entry, its way out). Thread-safe.
class SandboxLink {
 public:
  ~SandboxLink();
  SandboxLink(const SandboxLink&) = delete;
  SandboxLink& operator=(const SandboxLink&) = delete;

  // Allows or blocks the sandbox's internet access from now on; blocking also cuts its open
  // connections. kFailedPrecondition once the HostNetwork is gone.
  Status SetInternet(bool allow);
  bool internet() const;

  std::string sandbox_address() const { return sandbox_address_.ToString(); }  // "10.201.0.6"
  std::string host_address() const { return host_address_.ToString(); }        // "10.201.0.5"
  const std::string& host_ifname() const { return host_ifname_; }              // "kiln-1"

 private:
  friend class HostNetwork;
  SandboxLink(std::shared_ptr<HostNetwork::State> state, uint32_t slot, std::string host_ifname,
              Ipv4 host_address, Ipv4 sandbox_address, bool internet);

  std::shared_ptr<HostNetwork::State> state_;
  uint32_t slot_;
  std::string host_ifname_;
  Ipv4 host_address_;
  Ipv4 sandbox_address_;
  bool internet_;  // guarded by the state's nftables mutex
};

}  // namespace kiln::kilnd::net
