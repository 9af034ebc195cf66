#include "kilnd/net/ruleset.h"

#include <gtest/gtest.h>

namespace kiln::kilnd::net {
namespace {

TEST(RulesetTest, ReplacesTheTableInOneBatch) {
  std::string rs = HostRuleset("kt", "kt-", *ParseIpv4Cidr("10.210.0.0/16"));
  // Add-then-delete first, so a leftover table is replaced and a missing one is no error.
  EXPECT_EQ(rs.find("add table inet kt\ndelete table inet kt\ntable inet kt {"), 0u) << rs;
}

TEST(RulesetTest, MatchesSandboxesByPrefixAndSubnet) {
  std::string rs = HostRuleset("kt", "kt-", *ParseIpv4Cidr("10.210.0.0/16"));
  EXPECT_NE(rs.find("iifname \"kt-*\" jump from_sandbox"), std::string::npos);
  EXPECT_NE(rs.find("ip saddr 10.210.0.0/16 oifname != \"kt-*\" masquerade"), std::string::npos);
  EXPECT_NE(rs.find("ip daddr 10.210.0.0/16 jump deny"), std::string::npos);
  EXPECT_NE(rs.find("fib saddr . iif oif missing drop"), std::string::npos);
  EXPECT_NE(rs.find("169.254.0.0/16"), std::string::npos);
  EXPECT_NE(rs.find("set no_internet"), std::string::npos);
}

TEST(RulesetTest, AddsExtraBlockedPrefixes) {
  std::string rs = HostRuleset("kt", "kt-", *ParseIpv4Cidr("10.210.0.0/16"),
                               {*ParseIpv4Cidr("192.0.2.0/24"), *ParseIpv4Cidr("10.1.0.0/16")});
  EXPECT_NE(rs.find("240.0.0.0/4, 192.0.2.0/24, 10.1.0.0/16 }"), std::string::npos) << rs;
  EXPECT_NE(rs.find("auto-merge"), std::string::npos);
}

TEST(RulesetTest, SetElementCommands) {
  EXPECT_EQ(AddNoInternetCommand("kt", *ParseIpv4("10.210.0.6")),
            "add element inet kt no_internet { 10.210.0.6 }\n");
  EXPECT_EQ(DeleteNoInternetCommand("kt", *ParseIpv4("10.210.0.6")),
            "delete element inet kt no_internet { 10.210.0.6 }\n");
}

}  // namespace
}  // namespace kiln::kilnd::net
