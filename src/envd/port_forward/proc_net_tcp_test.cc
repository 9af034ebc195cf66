#include "envd/port_forward/proc_net_tcp.h"

#include <bit>
#include <gtest/gtest.h>
#include <string>

namespace kiln::envd::port_forward {
namespace {

namespace ip = boost::asio::ip;

ip::address A(const char* s) { return ip::make_address(s); }

// Real lines from a little-endian host (the kernel prints each address word in host order).
constexpr std::string_view kTcp =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
    "inode                                                     \n"
    "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 "
    "81234 1 0000000000000000 100 0 0 10 0                     \n"
    "   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 "
    "1234 1 0000000000000000 100 0 0 10 0                      \n"
    "   2: 0202000A:C350 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 "
    "4321 1 0000000000000000 100 0 0 10 0                      \n"
    "   3: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 "
    "81299 1 0000000000000000 20 4 30 10 -1                    \n"
    "   4: 0500007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 "
    "81300 1 0000000000000000 100 0 0 10 0                     \n";

constexpr std::string_view kTcp6 =
    "  sl  local_address                         remote_address                        st "
    "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000  1000        0 555 1 0000000000000000 100 0 0 10 0\n"
    "   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 556 1 0000000000000000 100 0 0 10 0\n"
    "   2: 0000000000000000FFFF00000100007F:0051 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 557 1 0000000000000000 100 0 0 10 0\n"
    "   3: 00000000000000000000000001000000:1F91 00000000000000000000000001000000:A000 06 "
    "00000000:00000000 03:00000D2C 00000000     0        0 0 3 0000000000000000\n";

class ProcNetTcpTest : public testing::Test {
 protected:
  void SetUp() override {
    if constexpr (std::endian::native != std::endian::little) {
      GTEST_SKIP() << "sample lines are from a little-endian host";
    }
  }
};

TEST_F(ProcNetTcpTest, KeepsListenersOfTcp) {
  ProcNetTcpListing l = ParseProcNetTcp(kTcp, false);
  EXPECT_EQ(l.malformed_lines, 0u);
  ASSERT_EQ(l.listeners.size(), 4u);
  EXPECT_EQ(l.listeners[0].address, A("127.0.0.1"));
  EXPECT_EQ(l.listeners[0].port, 8080);
  EXPECT_EQ(l.listeners[1].address, A("0.0.0.0"));
  EXPECT_EQ(l.listeners[1].port, 22);
  EXPECT_EQ(l.listeners[2].address, A("10.0.2.2"));
  EXPECT_EQ(l.listeners[2].port, 50000);
  EXPECT_EQ(l.listeners[3].address, A("127.0.0.5"));
  EXPECT_EQ(l.listeners[3].port, 3000);
}

TEST_F(ProcNetTcpTest, KeepsListenersOfTcp6AndUnmapsV4Mapped) {
  ProcNetTcpListing l = ParseProcNetTcp(kTcp6, true);
  EXPECT_EQ(l.malformed_lines, 0u);
  ASSERT_EQ(l.listeners.size(), 3u);
  EXPECT_EQ(l.listeners[0].address, A("::1"));
  EXPECT_EQ(l.listeners[0].port, 8081);
  EXPECT_EQ(l.listeners[1].address, A("::"));
  EXPECT_EQ(l.listeners[1].port, 80);
  EXPECT_EQ(l.listeners[2].address, A("127.0.0.1"));
  EXPECT_TRUE(l.listeners[2].address.is_v4());
  EXPECT_EQ(l.listeners[2].port, 81);
}

TEST_F(ProcNetTcpTest, SkipsMalformedLines) {
  std::string text =
      "  sl  local_address rem_address   st\n"
      "\n"
      "garbage\n"
      "   0: ZZZZZZZZ:0050 00000000:0000 0A\n"          // not hex
      "   1: 0100007F:50 00000000:0000 0A\n"            // short port
      "   2: 0100007F:0050 00000000:0000\n"             // no state
      "   3: 0100007F0050 00000000:0000 0A\n"           // no colon
      "   4: 00000000000000000000000001000000:0050 00000000:0000 0A\n"  // IPv6 in tcp
      "   x: 0100007F:0050 00000000:0000 0A\n"          // slot is not a number
      "   5: 0100007F:0050 00000000:0000 A\n"           // one-digit state
      "   6: 0100007F:0050 00000000:0000 0G\n"          // state not hex
      "   7: -100007F:0050 00000000:0000 0A\n"          // sign
      "   8: 0100007F:+050 00000000:0000 0A\n"          // sign in port
      "   9: 0100007F:0050 00000000:0000 0A\n" +        // good (four fields are enough)
      std::string(5000, 'x') + "\n" +                 // long junk
      std::string("\x01\xff\0\n", 4) +                  // binary junk
      "  10: 0100007F:0051 00000000:0000 0A 00000000:00000000";  // cut off: skipped, not counted
  ProcNetTcpListing l = ParseProcNetTcp(text, false);
  ASSERT_EQ(l.listeners.size(), 1u);
  EXPECT_EQ(l.listeners[0].port, 0x50);
  EXPECT_EQ(l.malformed_lines, 13u);
}

TEST_F(ProcNetTcpTest, Tcp6LinesMalformedForWrongLength) {
  ProcNetTcpListing l = ParseProcNetTcp(
      "   0: 0100007F:0050 00000000:0000 0A\n"
      "   1: 000000000000000000000000010000:0050 00000000:0000 0A\n",
      true);
  EXPECT_TRUE(l.listeners.empty());
  EXPECT_EQ(l.malformed_lines, 2u);
}

TEST(ProcNetTcpEmptyTest, EmptyAndHeaderOnly) {
  EXPECT_TRUE(ParseProcNetTcp("", false).listeners.empty());
  ProcNetTcpListing l = ParseProcNetTcp("  sl  local_address rem_address   st\n", false);
  EXPECT_TRUE(l.listeners.empty());
  EXPECT_EQ(l.malformed_lines, 0u);
}

TEST(ReadProcNetFileTest, ReadsOwnListingAndReportsMissingFile) {
  Result<std::string> text = ReadProcNetFile("/proc/thread-self/net/tcp", 1 << 20);
  ASSERT_TRUE(text) << text.error().message();
  EXPECT_NE(text->find("local_address"), std::string::npos);
  Result<std::string> head = ReadProcNetFile("/proc/thread-self/net/tcp", 10);
  ASSERT_TRUE(head);
  EXPECT_EQ(head->size(), 10u);
  Result<std::string> missing = ReadProcNetFile("/proc/thread-self/net/no-such-file", 100);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Errc::kNotFound);
}

std::vector<TcpListener> L(std::initializer_list<std::pair<const char*, uint16_t>> items) {
  std::vector<TcpListener> out;
  for (const auto& [a, p] : items) out.push_back(TcpListener{A(a), p});
  return out;
}

const ip::address kGuest = A("10.0.2.2");

TEST(PlanForwardsTest, LoopbackOnlyPortsAreForwarded) {
  auto plan = PlanForwards(L({{"127.0.0.1", 8080}, {"0.0.0.0", 22}, {"192.0.2.7", 9000}}),
                           kGuest, {}, {});
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0], (ForwardTarget{8080, A("127.0.0.1")}));
}

TEST(PlanForwardsTest, CoveredPortsAreNotForwarded) {
  auto listeners = L({{"127.0.0.1", 1}, {"0.0.0.0", 1},       // IPv4 any
                      {"127.0.0.1", 2}, {"::", 2},            // IPv6 any (dual stack)
                      {"127.0.0.1", 3}, {"10.0.2.2", 3},      // the forward address itself
                      {"127.0.0.1", 4}, {"::ffff:10.0.2.2", 4},
                      {"127.0.0.1", 5}});
  auto plan = PlanForwards(listeners, kGuest, {}, {});
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].port, 5);
}

TEST(PlanForwardsTest, OwnListenerDoesNotCoverItsPort) {
  auto plan = PlanForwards(L({{"127.0.0.1", 3000}, {"10.0.2.2", 3000}}), kGuest, {3000}, {});
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].port, 3000);
}

TEST(PlanForwardsTest, ExcludedPortsAndPortZeroAreNeverForwarded) {
  auto plan = PlanForwards(L({{"127.0.0.1", 49983}, {"127.0.0.1", 0}, {"127.0.0.1", 7}}), kGuest,
                           {}, {49983});
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].port, 7);
}

TEST(PlanForwardsTest, PrefersLoopbackAddresses) {
  auto plan = PlanForwards(L({{"::1", 1},
                              {"127.0.0.9", 2}, {"::1", 2},
                              {"127.0.0.9", 3}, {"127.0.0.1", 3}, {"::1", 3},
                              {"127.0.0.9", 4}, {"127.0.0.3", 4},
                              {"::ffff:127.0.0.1", 5}}),
                           kGuest, {}, {});
  ASSERT_EQ(plan.size(), 5u);
  EXPECT_EQ(plan[0], (ForwardTarget{1, A("::1")}));
  EXPECT_EQ(plan[1], (ForwardTarget{2, A("127.0.0.9")}));
  EXPECT_EQ(plan[2], (ForwardTarget{3, A("127.0.0.1")}));
  EXPECT_EQ(plan[3], (ForwardTarget{4, A("127.0.0.3")}));
  EXPECT_EQ(plan[4], (ForwardTarget{5, A("127.0.0.1")}));
}

TEST(PlanForwardsTest, IPv6ForwardAddress) {
  const ip::address v6 = A("fd00::2");
  auto plan = PlanForwards(L({{"127.0.0.1", 1}, {"0.0.0.0", 1},    // IPv4 any: not on fd00::2
                              {"::1", 2}, {"::", 2},
                              {"::1", 3}, {"fd00::2", 3}}),
                           v6, {}, {});
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].port, 1);
}

TEST(PlanForwardsTest, LoopbackForwardAddressIsNeverASource) {
  // Forwarding to 127.0.0.2 (as the tests do): the forwarder's own listener on 127.0.0.2 must
  // not keep its port alive once the real listener is gone.
  const ip::address fwd = A("127.0.0.2");
  EXPECT_TRUE(PlanForwards(L({{"127.0.0.2", 80}}), fwd, {80}, {}).empty());
  EXPECT_TRUE(PlanForwards(L({{"127.0.0.2", 80}}), fwd, {}, {}).empty());
  auto plan = PlanForwards(L({{"127.0.0.2", 80}, {"127.0.0.1", 80}}), fwd, {80}, {});
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0], (ForwardTarget{80, A("127.0.0.1")}));
}

TEST(PlanForwardsTest, IsLoopback) {
  EXPECT_TRUE(IsLoopback(A("127.0.0.1")));
  EXPECT_TRUE(IsLoopback(A("127.255.0.1")));
  EXPECT_TRUE(IsLoopback(A("::1")));
  EXPECT_TRUE(IsLoopback(A("::ffff:127.0.0.1")));
  EXPECT_FALSE(IsLoopback(A("128.0.0.1")));
  EXPECT_FALSE(IsLoopback(A("::")));
  EXPECT_FALSE(IsLoopback(A("0.0.0.0")));
}

}  // namespace
}  // namespace kiln::envd::port_forward
