#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln::envd::port_forward {

// One TCP socket in state LISTEN, as /proc/net/tcp or /proc/net/tcp6 lists it. IPv4-mapped
// IPv6 addresses (::ffff:a.b.c.d) are given as the IPv4 address.
struct TcpListener {
  boost::asio::ip::address address;
  uint16_t port = 0;
};

struct ProcNetTcpListing {
  std::vector<TcpListener> listeners;
  // Lines that were neither the header nor a socket entry (skipped).
  size_t malformed_lines = 0;
};

// Parses the text of /proc/net/tcp (`ipv6` false: 8 hex digits per address) or /proc/net/tcp6
// (`ipv6` true: 32 hex digits) and keeps the sockets in state 0A (LISTEN). The kernel prints each
// 32-bit word of an address in the host's byte order. Never fails: lines that do not parse are
// counted and skipped; a truncated last line is skipped too.
ProcNetTcpListing ParseProcNetTcp(std::string_view text, bool ipv6);

// Reads a /proc/net/tcp-style file, at most `max_bytes` (the kernel lists listening sockets
// first, so a cut-off read of a huge table still has them). A missing file is kNotFound.
Result<std::string> ReadProcNetFile(const std::string& path, size_t max_bytes);

// A loopback-only listener the forwarder should expose on the forward address.
struct ForwardTarget {
  uint16_t port = 0;
  // Where the relay connects: 127.0.0.1 if listening there, else another 127.x address, else ::1.
  boost::asio::ip::address target;

  bool operator==(const ForwardTarget&) const = default;
};

// The ports to forward, ascending: a LISTEN socket on a loopback address (127.0.0.0/8, ::1) and
// none that already answers on `forward_address` (the address itself, 0.0.0.0 when it is IPv4,
// ::). Listeners on `forward_address` at a port in `own_ports` are the forwarder's own: they
// neither cover their port nor count as a loopback listener (when the forward address is itself
// a loopback address). Ports in `excluded_ports` are never forwarded.
std::vector<ForwardTarget> PlanForwards(std::span<const TcpListener> listeners,
                                        const boost::asio::ip::address& forward_address,
                                        const std::set<uint16_t>& own_ports,
                                        const std::set<uint16_t>& excluded_ports);

// 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
bool IsLoopback(const boost::asio::ip::address& address);
// IPv4-mapped IPv6 addresses become IPv4; others are returned as they are.
boost::asio::ip::address Unmapped(const boost::asio::ip::address& address);

}  // namespace kiln::envd::port_forward
