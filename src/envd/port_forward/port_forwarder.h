#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace kiln::envd::port_forward {

struct PortForwarderOptions {
  // Where forwarded ports are exposed: the guest's own address (the vm runtime's 10.0.2.2).
  boost::asio::ip::address forward_address;
  std::chrono::milliseconds scan_interval{500};
  // Never forwarded (envd's own port).
  std::set<uint16_t> excluded_ports;
  // Bounds, so a sandbox cannot make the agent run out of descriptors or memory.
  size_t max_ports = 256;
  size_t max_relays_per_port = 1024;
  size_t max_relays = 2048;
  // Listing size read per scan; listening sockets come first in it.
  size_t max_listing_bytes = 4 * 1024 * 1024;
  // thread-self: the namespace of the thread that scans (the agent has only one).
  std::string proc_net_tcp = "/proc/thread-self/net/tcp";
  std::string proc_net_tcp6 = "/proc/thread-self/net/tcp6";
};

// Makes servers that listen only on loopback (127.0.0.1, ::1) reachable on the forward address,
// as E2B's envd does: kilnd's proxy reaches a vm sandbox's ports at the guest's address.
//
// Every scan_interval it reads /proc/net/tcp{,6}; for each port with a loopback listener and
// none on the forward address (or 0.0.0.0, ::) it listens on <forward address>:<port>
// (SO_REUSEADDR) and relays each accepted connection to the loopback listener, both ways with
// half-close. When the loopback listener is gone (or one on the forward address appears), it
// stops listening there; open relays run to their end. A port whose bind fails is retried on a
// later scan. At capacity (max_relays_per_port, max_relays) a port stops accepting (the kernel's
// backlog holds new connections) until relays end. Nothing here ends the agent.
//
// Lives on one io_context thread; ForwardedPorts() and scans() may be called from any thread.
class PortForwarder {
 public:
  PortForwarder(boost::asio::io_context& io, PortForwarderOptions options);
  // Stops listening and closes every relay.
  ~PortForwarder();
  PortForwarder(const PortForwarder&) = delete;
  PortForwarder& operator=(const PortForwarder&) = delete;

  // Scans now and then every scan_interval. Call on the io_context's thread (or before it runs).
  void Start();

  // The ports listening on the forward address now, ascending.
  std::vector<uint16_t> ForwardedPorts() const;
  // Scans completed so far.
  uint64_t scans() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace kiln::envd::port_forward
