#pragma once

// The nftables text of the host network (HostNetwork::Setup) and of its per-sandbox updates.

#include <string>
#include <string_view>
#include <vector>

#include "kilnd/net/ipv4.h"

namespace kiln::kilnd::net {

// Commands that replace table `inet <table>` (created empty first so that deleting it cannot
// fail) with the sandbox ruleset: veths named `<ifname_prefix>*` carry sandboxes of `subnet`,
// which may reach neither the built-in blocked ranges nor `blocked_extra`.
std::string HostRuleset(std::string_view table, std::string_view ifname_prefix, Ipv4Cidr subnet,
                        const std::vector<Ipv4Cidr>& blocked_extra = {});

// Commands that delete table `inet <table>` whether or not it exists.
std::string RemoveTableCommands(std::string_view table);

// Commands that add `addr` to / delete it from the table's `no_internet` set.
std::string AddNoInternetCommand(std::string_view table, Ipv4 addr);
std::string DeleteNoInternetCommand(std::string_view table, Ipv4 addr);

}  // namespace kiln::kilnd::net
