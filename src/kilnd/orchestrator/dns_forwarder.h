#pragma once

// DNS for sandboxes. The host's resolver is usually on loopback or a private address, which
// a sandbox may not reach; so kilnd answers on Instance::dns_address():53 inside each sandbox
// (127.0.0.53 for the ns runtime; a UDP socket it creates in the sandbox's network namespace,
// so no firewall hole is needed) and relays the queries from the host to its resolvers.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "kilnd/runtime/runtime.h"

namespace kiln::kilnd {

// The sandbox's /etc/resolv.conf when kilnd relays DNS.
inline constexpr std::string_view kSandboxResolvConf =
    "# Written by kilnd: DNS is relayed to the host's resolvers.\nnameserver 127.0.0.53\n";

// The IPv4 nameservers of a resolv.conf ("nameserver 10.0.0.2" lines), port 53.
std::vector<boost::asio::ip::udp::endpoint> ParseNameservers(std::string_view resolv_conf);
// "IP" or "IP:PORT".
Result<boost::asio::ip::udp::endpoint> ParseDnsServer(const std::string& text);

// One sandbox's relay: answering while it exists.
class DnsRelay {
 public:
  struct State;
  explicit DnsRelay(std::shared_ptr<State> state) : state_(std::move(state)) {}
  ~DnsRelay();
  DnsRelay(const DnsRelay&) = delete;
  DnsRelay& operator=(const DnsRelay&) = delete;

 private:
  std::shared_ptr<State> state_;
};

class DnsForwarder {
 public:
  DnsForwarder(boost::asio::io_context& io, std::vector<boost::asio::ip::udp::endpoint> upstreams);

  bool enabled() const { return !upstreams_.empty(); }
  // Starts answering on the instance's dns_address():53 in its network; the relay stops when the
  // returned handle is destroyed.
  Result<std::unique_ptr<DnsRelay>> Serve(Instance& instance);

 private:
  boost::asio::io_context& io_;
  std::vector<boost::asio::ip::udp::endpoint> upstreams_;
};

}  // namespace kiln::kilnd
