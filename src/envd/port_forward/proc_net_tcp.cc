#include "envd/port_forward/proc_net_tcp.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>

#include "base/unique_fd.h"

namespace kiln::envd::port_forward {
namespace {

namespace ip = boost::asio::ip;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// Splits `line` at runs of blanks; at most `max` fields are needed.
std::vector<std::string_view> Fields(std::string_view line, size_t max) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size() && out.size() < max) {
    while (i < line.size() && IsSpace(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && !IsSpace(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

// Exactly `digits` hex digits, nothing else.
template <typename U>
bool ParseHex(std::string_view s, size_t digits, U& out) {
  if (s.size() != digits) return false;
  for (char c : s) {
    bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
  }
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// "0100007F:1F90" (or 32 hex digits before the colon for IPv6).
bool ParseEndpoint(std::string_view s, bool ipv6, ip::address& address, uint16_t& port) {
  size_t colon = s.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view addr = s.substr(0, colon);
  if (!ParseHex(s.substr(colon + 1), 4, port)) return false;
  if (!ipv6) {
    uint32_t word = 0;
    if (!ParseHex(addr, 8, word)) return false;
    ip::address_v4::bytes_type bytes;
    std::memcpy(bytes.data(), &word, sizeof(word));  // the word is in host byte order
    address = ip::address_v4(bytes);
    return true;
  }
  if (addr.size() != 32) return false;
  ip::address_v6::bytes_type bytes;
  for (size_t i = 0; i < 4; ++i) {
    uint32_t word = 0;
    if (!ParseHex(addr.substr(i * 8, 8), 8, word)) return false;
    std::memcpy(bytes.data() + i * 4, &word, sizeof(word));
  }
  address = Unmapped(ip::address_v6(bytes));
  return true;
}

bool IsSlotNumber(std::string_view s) {
  if (s.size() < 2 || s.back() != ':') return false;
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

constexpr unsigned kStateListen = 0x0A;

}  // namespace

ip::address Unmapped(const ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return ip::make_address_v4(ip::v4_mapped, address.to_v6());
  }
  return address;
}

bool IsLoopback(const ip::address& address) {
  ip::address a = Unmapped(address);
  if (a.is_v4()) return (a.to_v4().to_uint() >> 24) == 127;
  return a.to_v6().is_loopback();
}

ProcNetTcpListing ParseProcNetTcp(std::string_view text, bool ipv6) {
  ProcNetTcpListing out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    bool complete = nl != std::string_view::npos;
    std::string_view line = complete ? text.substr(0, nl) : text;
    text.remove_prefix(complete ? nl + 1 : text.size());
    std::vector<std::string_view> f = Fields(line, 4);
    if (f.empty()) continue;
    if (f[0] == "sl") continue;  // the header
    if (!complete) break;        // cut off by a size-limited read
    ip::address address;
    uint16_t port = 0;
    unsigned state = 0;
    if (f.size() < 4 || !IsSlotNumber(f[0]) || !ParseEndpoint(f[1], ipv6, address, port) ||
        !ParseHex(f[3], 2, state)) {
      ++out.malformed_lines;
      continue;
    }
    if (state == kStateListen) out.listeners.push_back(TcpListener{address, port});
  }
  return out;
}

Result<std::string> ReadProcNetFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + path);
  std::string out;
  std::array<char, 64 * 1024> buf;
  while (out.size() < max_bytes) {
    ssize_t n = ::read(fd.get(), buf.data(), std::min(buf.size(), max_bytes - out.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return FailErrno("read " + path);
    }
    if (n == 0) break;
    out.append(buf.data(), static_cast<size_t>(n));
  }
  return out;
}

std::vector<ForwardTarget> PlanForwards(std::span<const TcpListener> listeners,
                                        const ip::address& forward_address,
                                        const std::set<uint16_t>& own_ports,
                                        const std::set<uint16_t>& excluded_ports) {
  const ip::address forward = Unmapped(forward_address);
  std::set<uint16_t> covered;
  // Per port, the best loopback address: 127.0.0.1, then other 127.x (lowest), then ::1.
  std::map<uint16_t, ip::address> loopback;
  auto rank = [](const ip::address& a) {
    if (a.is_v4()) return a.to_v4() == ip::address_v4::loopback() ? 0 : 1;
    return 2;
  };
  for (const TcpListener& l : listeners) {
    ip::address a = Unmapped(l.address);
    if (a == forward) {
      if (!own_ports.contains(l.port)) covered.insert(l.port);
      continue;
    }
    // 0.0.0.0 answers for IPv4 forward addresses; :: (unless IPV6_V6ONLY) for both families.
    if (a.is_unspecified() && (a.is_v6() || forward.is_v4())) {
      covered.insert(l.port);
      continue;
    }
    if (!IsLoopback(a)) continue;
    auto [it, inserted] = loopback.emplace(l.port, a);
    bool better = rank(a) < rank(it->second) || (rank(a) == rank(it->second) && a < it->second);
    if (!inserted && better) it->second = a;
  }
  std::vector<ForwardTarget> out;
  for (const auto& [port, target] : loopback) {
    if (port == 0 || covered.contains(port) || excluded_ports.contains(port)) continue;
    out.push_back(ForwardTarget{port, target});
  }
  return out;
}

}  // namespace kiln::envd::port_forward
