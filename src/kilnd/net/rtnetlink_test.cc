#include "kilnd/net/rtnetlink.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "kilnd/net/netns.h"
#include "kilnd/net/test_support.h"

namespace kiln::kilnd::net {
namespace {

using testing::Addr;

// Two fresh namespaces joined by a veth made from the first; nothing touches the host's.
class RtNetlinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, netlink)";
    Result<NetNamespace> a = NetNamespace::Create();
    Result<NetNamespace> b = NetNamespace::Create();
    ASSERT_TRUE(a && b);
    a_ = std::move(*a);
    b_ = std::move(*b);
    Result<RtNetlink> nl_a = RtNetlink::OpenInNetns(a_.get());
    Result<RtNetlink> nl_b = RtNetlink::OpenInNetns(b_.get());
    ASSERT_TRUE(nl_a && nl_b);
    nl_a_.emplace(std::move(*nl_a));
    nl_b_.emplace(std::move(*nl_b));
  }

  NetNamespace a_, b_;
  std::optional<RtNetlink> nl_a_, nl_b_;
};

TEST_F(RtNetlinkTest, CreatesVethWithPeerInsideOtherNamespace) {
  ASSERT_TRUE(nl_a_->CreateVeth("left0", "right0", b_.get()));
  Result<int> left = nl_a_->LinkIndex("left0");
  ASSERT_TRUE(left) << left.error().message();
  EXPECT_GT(*left, 1);
  EXPECT_FALSE(nl_a_->LinkIndex("right0"));  // the peer lives in b
  Result<std::vector<LinkInfo>> links_b = nl_b_->ListLinks();
  ASSERT_TRUE(links_b) << links_b.error().message();
  std::vector<std::string> names;
  for (const LinkInfo& l : *links_b) names.push_back(l.name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"lo", "right0"}));
}

TEST_F(RtNetlinkTest, ConfiguredPairCarriesTraffic) {
  ASSERT_TRUE(nl_a_->CreateVeth("left0", "right0", b_.get()));
  Result<int> left = nl_a_->LinkIndex("left0");
  Result<int> right = nl_b_->LinkIndex("right0");
  ASSERT_TRUE(left && right);
  ASSERT_TRUE(nl_a_->QueueAddress(*left, Addr("198.51.100.1"), 30).QueueLinkUp(*left).Commit());
  ASSERT_TRUE(nl_b_->QueueAddress(*right, Addr("198.51.100.2"), 30)
                  .QueueLinkUp(*right)
                  .QueueRoute(Ipv4Cidr{Ipv4{0}, 0}, Addr("198.51.100.1"))
                  .Commit());
  Result<std::vector<LinkInfo>> links = nl_b_->ListLinks();
  ASSERT_TRUE(links);
  for (const LinkInfo& l : *links) {
    if (l.name == "right0") {
      EXPECT_TRUE(l.up);
    }
  }
  testing::Listener server = testing::Listen(a_.get(), Addr("198.51.100.1"));
  testing::Connection c = testing::ConnectFrom(b_.get(), Addr("198.51.100.1"), server.port);
  EXPECT_EQ(c.error, 0) << std::strerror(c.error);
  EXPECT_EQ(testing::AcceptPeer(server), Addr("198.51.100.2"));
}

TEST_F(RtNetlinkTest, DuplicateNameIsAlreadyExistsNamingTheRequest) {
  ASSERT_TRUE(nl_a_->CreateVeth("left0", "right0", b_.get()));
  Status again = nl_a_->CreateVeth("left0", "other0", b_.get());
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Errc::kAlreadyExists);
  EXPECT_EQ(again.error().sys_errno(), EEXIST);
  EXPECT_NE(again.error().message().find("create veth left0"), std::string::npos)
      << again.error().message();
}

TEST_F(RtNetlinkTest, BatchReportsTheFirstFailingRequest) {
  ASSERT_TRUE(nl_a_->CreateVeth("left0", "right0", b_.get()));
  Result<int> left = nl_a_->LinkIndex("left0");
  ASSERT_TRUE(left);
  Status st = nl_a_->QueueLinkUp(*left)
                  .QueueAddress(9999, Addr("198.51.100.1"), 30)  // no such interface
                  .QueueLinkUp(1)
                  .Commit();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("add address 198.51.100.1/30 to link 9999"),
            std::string::npos)
      << st.error().message();
  // The socket is usable afterwards: every ack of the batch was consumed.
  EXPECT_TRUE(nl_a_->SetLinkUp(*left));
}

TEST_F(RtNetlinkTest, MissingLinkIsNotFound) {
  Result<int> idx = nl_a_->LinkIndex("nosuch0");
  ASSERT_FALSE(idx);
  EXPECT_EQ(idx.error().code(), Errc::kNotFound);
}

TEST_F(RtNetlinkTest, RejectsBadInterfaceNames) {
  Status st = nl_a_->CreateVeth("a-name-that-is-too-long", "x", b_.get());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kInvalidArgument);
  // Nothing half-queued leaks into the next commit.
  EXPECT_TRUE(nl_a_->SetLinkUp(1));
}

TEST_F(RtNetlinkTest, DeleteLinkRemovesBothEnds) {
  ASSERT_TRUE(nl_a_->CreateVeth("left0", "right0", b_.get()));
  Result<int> left = nl_a_->LinkIndex("left0");
  ASSERT_TRUE(left);
  ASSERT_TRUE(nl_a_->DeleteLink(*left));
  EXPECT_FALSE(nl_a_->LinkIndex("left0"));
  EXPECT_FALSE(nl_b_->LinkIndex("right0"));
}

}  // namespace
}  // namespace kiln::kilnd::net
