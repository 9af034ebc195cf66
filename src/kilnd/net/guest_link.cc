#include "kilnd/net/guest_link.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>
#include <utility>

#include "base/scope_exit.h"
#include "kilnd/net/ipv4.h"
#include "kilnd/net/netns.h"
#include "kilnd/net/nftables.h"
#include "kilnd/net/rtnetlink.h"

namespace kiln::kilnd::net {
namespace {

constexpr int kLoopbackIndex = 1;  // LOOPBACK_IFINDEX: lo is ifindex 1 in every namespace

// An interface name that is safe inside a quoted nft string and a /proc/sys path.
Status CheckTapName(const std::string& name) {
  bool ok = !name.empty() && name.size() < IFNAMSIZ && name != "." && name != "..";
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '.' || c == '-');
  }
  if (!ok) {
    return Fail(Errc::kInvalidArgument, "guest link: interface name '" + name +
                                            "' must be 1..15 characters of [A-Za-z0-9_.-]");
  }
  return {};
}

struct GatewayAddress {
  Ipv4 address;  // the tap's own address, e.g. 10.0.2.1
  Ipv4Cidr subnet;
};

// "a.b.c.d/n" with host bits set (an interface address, unlike ParseIpv4Cidr's prefixes).
Result<GatewayAddress> ParseGatewayCidr(const std::string& text) {
  auto invalid = [&](std::string why) {
    return Fail(Errc::kInvalidArgument, "guest link: host_cidr '" + text + "': " + why);
  };
  size_t slash = text.find('/');
  if (slash == std::string::npos) return invalid("expected a.b.c.d/n");
  Result<Ipv4> address = ParseIpv4(std::string_view(text).substr(0, slash));
  if (!address) return invalid(address.error().message());
  int prefix = -1;
  const char* first = text.data() + slash + 1;
  const char* last = text.data() + text.size();
  auto [end, ec] = std::from_chars(first, last, prefix);
  if (ec != std::errc() || end != last || first == last) return invalid("bad prefix length");
  // A guest subnet needs room for the gateway, the guest and a broadcast address.
  if (prefix < 8 || prefix > 30) return invalid("prefix length must be 8..30");
  Ipv4Cidr subnet{Ipv4{0}, prefix};
  subnet.network = Ipv4{address->value & subnet.Mask()};
  uint32_t host_bits = address->value & ~subnet.Mask();
  if (host_bits == 0 || host_bits == ~subnet.Mask()) {
    return invalid("the address is the subnet's network or broadcast address");
  }
  return GatewayAddress{*address, subnet};
}

// Opens /dev/net/tun and creates tap `name` in the calling thread's network namespace (a tun
// device belongs to the namespace its /dev/net/tun fd was opened in).
Result<UniqueFd> OpenTap(const std::string& name) {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd) return FailErrno("open /dev/net/tun");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  // IFF_TUN_EXCL: fail rather than attach to an existing device of that name (it would be
  // someone else's). No IFF_VNET_HDR: QEMU's virtio-net without vhost does not need it.
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    int err = errno;
    if (err == EBUSY || err == EEXIST) {
      return Unexpected(
          Error(Errc::kAlreadyExists, "create tap " + name + ": interface exists", err));
    }
    return FailErrno("create tap " + name + " (TUNSETIFF)", err);
  }
  return fd;
}

// Writes `value` to a sysctl of the calling thread's network namespace (/proc/sys/net shows
// the namespace of the thread that opens the file).
Status WriteNetSysctl(const std::string& path, std::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + path);
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    return FailErrno("write " + path);
  }
  return {};
}

// Everything CreateGuestLink does, on a thread that is inside the sandbox's namespace.
Result<UniqueFd> CreateInCurrentNetns(const GuestLinkConfig& config,
                                      const GatewayAddress& gateway) {
  KILN_ASSIGN_OR_RETURN(UniqueFd tap, OpenTap(config.ifname));
  // Before the link is up, so the tap never gets an IPv6 link-local address: the guest has no
  // IPv6 (the host drops it from sandboxes anyway).
  KILN_TRY(WriteNetSysctl("/proc/sys/net/ipv6/conf/" + config.ifname + "/disable_ipv6", "1\n"));
  // Per namespace: the host's setting is not touched.
  KILN_TRY(WriteNetSysctl("/proc/sys/net/ipv4/ip_forward", "1\n"));
  // The firewall goes in before the tap is up, so no packet of the guest ever meets the
  // namespace unfiltered. The nftables context is made here: its netlink socket acts on the
  // namespace it was opened in.
  KILN_ASSIGN_OR_RETURN(NftContext nft, NftContext::Create());
  std::string rules = GuestRuleset(config.ifname, gateway.address.ToString(),
                                   gateway.subnet.ToString(), config.masquerade);
  if (auto ok = nft.Run(rules); !ok) {
    return std::unexpected(std::move(ok).error().Wrap(std::string("table inet ") + kGuestTable));
  }
  ScopeExit drop_table(
      [&] { (void)nft.Run(std::string("delete table inet ") + kGuestTable + "\n"); });
  KILN_ASSIGN_OR_RETURN(RtNetlink nl, RtNetlink::Open());
  KILN_ASSIGN_OR_RETURN(int index, nl.LinkIndex(config.ifname));
  // The tap's carrier is on while an fd is attached, so it passes traffic once up.
  if (auto ok = nl.QueueLinkUp(kLoopbackIndex)
                    .QueueAddress(index, gateway.address, gateway.subnet.prefix_len)
                    .QueueLinkUp(index)
                    .QueueSyncLinkState(index)
                    .Commit();
      !ok) {
    return std::unexpected(std::move(ok).error().Wrap("tap " + config.ifname));
  }
  drop_table.Dismiss();
  return tap;
}

}  // namespace

std::string GuestRuleset(const std::string& ifname, const std::string& gateway,
                         const std::string& subnet, bool masquerade) {
  std::string table = std::string("inet ") + kGuestTable;
  std::string tap = "\"" + ifname + "\"";
  // `create` fails when the table exists (one guest link per namespace). Not the usual "add
  // table; delete table" replacement: a transaction that deletes a table leaves destroy work
  // behind, and closing an nftables socket waits for it (an RCU grace period, 10-15 ms here),
  // which would put that wait on the sandbox create path.
  std::string out = "create table " + table + "\n";
  out += "table " + table + " {\n";
  // SECURITY: the guest is untrusted. It reaches the namespace itself only for DNS at the
  // gateway (kilnd's relay) and with replies to connections the namespace opened (kilnd's
  // sockets to the guest's services); everything else addressed here is dropped: other ports,
  // the namespace's eth0 address, loopback (should route_localnet ever be on), broadcasts.
  out += "  chain input {\n";
  out += "    type filter hook input priority filter; policy accept;\n";
  out += "    iifname " + tap + " ct state established,related accept\n";
  out += "    iifname " + tap + " ip daddr " + gateway + " udp dport 53 accept\n";
  out += "    iifname " + tap + " ip daddr " + gateway + " tcp dport 53 accept\n";
  out += "    iifname " + tap + " drop\n";
  out += "  }\n";
  // Routed traffic must come from the guest subnet (so it is masqueraded, and a guest cannot
  // pose as anyone else); no IPv6. Where it may go is the host's policy, which sees the
  // sandbox's own address.
  out += "  chain forward {\n";
  out += "    type filter hook forward priority filter; policy accept;\n";
  out += "    iifname " + tap + " meta nfproto ipv6 drop\n";
  out += "    iifname " + tap + " ip saddr != " + subnet + " drop\n";
  out += "  }\n";
  if (masquerade) {
    out += "  chain postrouting {\n";
    out += "    type nat hook postrouting priority srcnat; policy accept;\n";
    out += "    oifname \"eth0\" ip saddr " + subnet + " masquerade\n";
    out += "  }\n";
  }
  out += "}\n";
  return out;
}

Result<UniqueFd> CreateGuestLink(int netns_fd, const GuestLinkConfig& config) {
  KILN_TRY(CheckTapName(config.ifname));
  KILN_ASSIGN_OR_RETURN(GatewayAddress gateway, ParseGatewayCidr(config.host_cidr));
  Result<UniqueFd> tap =
      RunInNetns(netns_fd, [&] { return CreateInCurrentNetns(config, gateway); });
  if (!tap) return std::unexpected(std::move(tap).error().Wrap("guest link " + config.ifname));
  return tap;
}

}  // namespace kiln::kilnd::net
