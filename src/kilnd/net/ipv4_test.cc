#include "kilnd/net/ipv4.h"

#include <gtest/gtest.h>

namespace kiln::kilnd::net {
namespace {

TEST(Ipv4Test, ParsesAndFormats) {
  Result<Ipv4> a = ParseIpv4("10.201.0.6");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->value, 0x0AC90006u);
  EXPECT_EQ(a->ToString(), "10.201.0.6");
  EXPECT_EQ(ParseIpv4("0.0.0.0")->ToString(), "0.0.0.0");
  EXPECT_EQ(ParseIpv4("255.255.255.255")->value, 0xFFFFFFFFu);
}

TEST(Ipv4Test, RejectsMalformedAddresses) {
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "01.2.3.4", "1..2.3",
                          "1.2.3.4 ", "a.b.c.d", "1.2.3.1000"}) {
    Result<Ipv4> r = ParseIpv4(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
    }
  }
}

TEST(Ipv4Test, ParsesPrefixes) {
  Result<Ipv4Cidr> c = ParseIpv4Cidr("10.201.0.0/16");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->prefix_len, 16);
  EXPECT_EQ(c->Mask(), 0xFFFF0000u);
  EXPECT_EQ(c->ToString(), "10.201.0.0/16");
  EXPECT_TRUE(c->Contains(*ParseIpv4("10.201.255.255")));
  EXPECT_FALSE(c->Contains(*ParseIpv4("10.202.0.0")));
  EXPECT_EQ(ParseIpv4Cidr("0.0.0.0/0")->Mask(), 0u);
  EXPECT_TRUE(ParseIpv4Cidr("0.0.0.0/0")->Contains(*ParseIpv4("8.8.8.8")));
}

TEST(Ipv4Test, RejectsBadPrefixes) {
  for (const char* bad : {"10.0.0.0", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.1/24",
                          "10.0.0.0/1x", "/8"}) {
    EXPECT_FALSE(ParseIpv4Cidr(bad)) << bad;
  }
}

TEST(Ipv4Test, ConvertsToNetworkOrder) {
  in_addr in = ParseIpv4("1.2.3.4")->ToInAddr();
  const auto* bytes = reinterpret_cast<const unsigned char*>(&in.s_addr);
  EXPECT_EQ(bytes[0], 1);
  EXPECT_EQ(bytes[3], 4);
}

}  // namespace
}  // namespace kiln::kilnd::net
