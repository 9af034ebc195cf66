#pragma once

// IPv4 addresses and prefixes as host-order integers: parsing, formatting and the /30 slot
// arithmetic of the sandbox subnet.

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln::kilnd::net {

// An IPv4 address in host byte order.
struct Ipv4 {
  uint32_t value = 0;

  in_addr ToInAddr() const;      // network byte order
  std::string ToString() const;  // "10.201.0.6"
  friend bool operator==(Ipv4, Ipv4) = default;
};

// "a.b.c.d" (exactly four decimal octets, no leading zeros beyond "0").
Result<Ipv4> ParseIpv4(std::string_view text);

// An IPv4 prefix such as 10.201.0.0/16. `network` has no bits set below the prefix.
struct Ipv4Cidr {
  Ipv4 network;
  int prefix_len = 0;

  uint32_t Mask() const;
  bool Contains(Ipv4 addr) const;
  std::string ToString() const;  // "10.201.0.0/16"
};

// "a.b.c.d/n" with 0 <= n <= 32; fails with kInvalidArgument when host bits are set.
Result<Ipv4Cidr> ParseIpv4Cidr(std::string_view text);

}  // namespace kiln::kilnd::net
