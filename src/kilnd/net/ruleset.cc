#include "kilnd/net/ruleset.h"

namespace kiln::kilnd::net {
namespace {

// Destinations no sandbox may reach (RFC 6890 special-purpose ranges that lead to the host, its
// network or the cloud provider): "this network", private ranges, shared address space (CGNAT),
// loopback, link-local (where cloud metadata services live: 169.254.169.254), multicast and
// reserved.
constexpr std::string_view kBlockedDestinations =
    "0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, "
    "192.168.0.0/16, 224.0.0.0/4, 240.0.0.0/4";

}  // namespace

std::string HostRuleset(std::string_view table, std::string_view ifname_prefix, Ipv4Cidr subnet,
                        const std::vector<Ipv4Cidr>& blocked_extra) {
  std::string t(table);
  std::string sbx = "\"" + std::string(ifname_prefix) + "*\"";
  std::string net = subnet.ToString();
  std::string out = RemoveTableCommands(table);
  out += "table inet " + t + " {\n";
  // Sandboxes whose address is here reach nothing through the host (SandboxLink::SetInternet).
  out += "  set no_internet { type ipv4_addr; }\n";
  // auto-merge: extra prefixes may overlap the built-in ones.
  out += "  set blocked { type ipv4_addr; flags interval; auto-merge; elements = { ";
  out += kBlockedDestinations;
  for (const Ipv4Cidr& extra : blocked_extra) out += ", " + extra.ToString();
  out += " }; }\n";
  // Before conntrack (raw priority), so refused packets leave no state behind. Sandboxes get no
  // IPv6. A sandbox's root may change its own address: the source must be the one the host
  // routes back through the same veth (strict reverse-path check), which pins each sandbox to
  // its /30 and makes `no_internet` (keyed by address) impossible to dodge.
  out += "  chain prerouting {\n";
  out += "    type filter hook prerouting priority raw; policy accept;\n";
  out += "    iifname " + sbx + " meta nfproto ipv6 drop\n";
  out += "    iifname " + sbx + " ip saddr != " + net + " drop\n";
  out += "    iifname " + sbx + " fib saddr . iif oif missing drop\n";
  out += "  }\n";
  // Refusals answer at once (TCP reset, ICMP administratively prohibited) so callers in the
  // sandbox fail fast instead of waiting for a timeout.
  out += "  chain deny {\n";
  out += "    meta l4proto tcp reject with tcp reset\n";
  out += "    reject with icmpx type admin-prohibited\n";
  out += "  }\n";
  out += "  chain forward {\n";
  out += "    type filter hook forward priority filter; policy accept;\n";
  out += "    iifname " + sbx + " jump from_sandbox\n";
  out += "    oifname " + sbx + " jump to_sandbox\n";
  out += "  }\n";
  // no_internet comes first so that blocking also cuts established connections.
  out += "  chain from_sandbox {\n";
  out += "    ip saddr @no_internet jump deny\n";
  out += "    ct state established,related accept\n";
  out += "    ip daddr " + net + " jump deny\n";  // other sandboxes
  out += "    ip daddr @blocked jump deny\n";
  out += "    accept\n";
  out += "  }\n";
  // Nobody opens connections into a sandbox through the host; kilnd reaches sandboxes with
  // sockets made inside their namespaces.
  out += "  chain to_sandbox {\n";
  out += "    ct state established,related accept\n";
  out += "    drop\n";
  out += "  }\n";
  // The host's own addresses and services: only replies to connections the host opened.
  out += "  chain input {\n";
  out += "    type filter hook input priority filter; policy accept;\n";
  out += "    iifname " + sbx + " ct state established,related accept\n";
  out += "    iifname " + sbx + " jump deny\n";
  out += "  }\n";
  out += "  chain postrouting {\n";
  out += "    type nat hook postrouting priority srcnat; policy accept;\n";
  out += "    ip saddr " + net + " oifname != " + sbx + " masquerade\n";
  out += "  }\n";
  out += "}\n";
  return out;
}

std::string RemoveTableCommands(std::string_view table) {
  std::string t(table);
  // Adding an existing table is a no-op, so the delete in the same transaction always applies.
  return "add table inet " + t + "\ndelete table inet " + t + "\n";
}

std::string AddNoInternetCommand(std::string_view table, Ipv4 addr) {
  return "add element inet " + std::string(table) + " no_internet { " + addr.ToString() + " }\n";
}

std::string DeleteNoInternetCommand(std::string_view table, Ipv4 addr) {
  return "delete element inet " + std::string(table) + " no_internet { " + addr.ToString() + " }\n";
}

}  // namespace kiln::kilnd::net
