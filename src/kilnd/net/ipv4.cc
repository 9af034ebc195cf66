#include "kilnd/net/ipv4.h"

#include <arpa/inet.h>

#include <charconv>

namespace kiln::kilnd::net {

in_addr Ipv4::ToInAddr() const { return in_addr{htonl(value)}; }

std::string Ipv4::ToString() const {
  std::string out;
  for (int shift = 24; shift >= 0; shift -= 8) {
    out += std::to_string((value >> shift) & 0xff);
    if (shift > 0) out += '.';
  }
  return out;
}

Result<Ipv4> ParseIpv4(std::string_view text) {
  auto bad = [&] {
    return Fail(Errc::kInvalidArgument, "bad IPv4 address '" + std::string(text) + "'");
  };
  uint32_t value = 0;
  std::string_view rest = text;
  for (int i = 0; i < 4; ++i) {
    size_t end = i < 3 ? rest.find('.') : rest.size();
    if (end == std::string_view::npos || end == 0 || end > 3) return bad();
    std::string_view part = rest.substr(0, end);
    if (part.size() > 1 && part[0] == '0') return bad();
    unsigned octet = 0;
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), octet);
    if (ec != std::errc() || ptr != part.data() + part.size() || octet > 255) return bad();
    value = (value << 8) | octet;
    rest = i < 3 ? rest.substr(end + 1) : std::string_view();
  }
  return Ipv4{value};
}

uint32_t Ipv4Cidr::Mask() const { return prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - prefix_len); }

bool Ipv4Cidr::Contains(Ipv4 addr) const { return (addr.value & Mask()) == network.value; }

std::string Ipv4Cidr::ToString() const {
  return network.ToString() + "/" + std::to_string(prefix_len);
}

Result<Ipv4Cidr> ParseIpv4Cidr(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Fail(Errc::kInvalidArgument,
                "bad IPv4 prefix '" + std::string(text) + "': " + std::string(why));
  };
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return bad("missing /length");
  KILN_ASSIGN_OR_RETURN(Ipv4 addr, ParseIpv4(text.substr(0, slash)));
  std::string_view len_text = text.substr(slash + 1);
  int len = -1;
  auto [ptr, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  if (len_text.empty() || ec != std::errc() || ptr != len_text.data() + len_text.size() ||
      len < 0 || len > 32) {
    return bad("length must be 0..32");
  }
  Ipv4Cidr cidr{addr, len};
  if ((addr.value & ~cidr.Mask()) != 0) return bad("host bits set");
  return cidr;
}

}  // namespace kiln::kilnd::net
