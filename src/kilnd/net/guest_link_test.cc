#include "kilnd/net/guest_link.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kilnd/net/ipv4.h"
#include "kilnd/net/netns.h"
#include "kilnd/net/rtnetlink.h"
#include "kilnd/net/test_support.h"

namespace kiln::kilnd::net {
namespace {

using std::chrono::milliseconds;
using testing::Addr;
using testing::SockAddr;
using testing::TcpSegmentsReceived;

// ---- A guest played from userspace: hand-built Ethernet frames written to the tap fd. ----

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;

constexpr Mac kGuestMac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
constexpr Mac kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr uint16_t kEthArp = 0x0806;
constexpr uint16_t kEthIpv4 = 0x0800;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint8_t kTcpAck = 0x10;

void Put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void Put32(Bytes& b, uint32_t v) {
  Put16(b, static_cast<uint16_t>(v >> 16));
  Put16(b, static_cast<uint16_t>(v));
}
void PutMac(Bytes& b, const Mac& m) { b.insert(b.end(), m.begin(), m.end()); }
uint16_t Get16(const Bytes& b, size_t at) { return static_cast<uint16_t>(b[at] << 8 | b[at + 1]); }
uint32_t Get32(const Bytes& b, size_t at) {
  return static_cast<uint32_t>(Get16(b, at)) << 16 | Get16(b, at + 2);
}
Mac GetMac(const Bytes& b, size_t at) {
  Mac m;
  std::copy_n(b.begin() + static_cast<long>(at), 6, m.begin());
  return m;
}

// RFC 1071 ones' complement sum, folded and inverted.
uint16_t Checksum(const Bytes& data, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < data.size(); i += 2) sum += Get16(data, i);
  if (data.size() % 2 == 1) sum += static_cast<uint32_t>(data.back()) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

Bytes Ethernet(const Mac& dst, const Mac& src, uint16_t type, const Bytes& payload) {
  Bytes f;
  PutMac(f, dst);
  PutMac(f, src);
  Put16(f, type);
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

Bytes Arp(uint16_t op, const Mac& sender_mac, Ipv4 sender_ip, const Mac& target_mac,
          Ipv4 target_ip) {
  Bytes a;
  Put16(a, 1);  // Ethernet
  Put16(a, kEthIpv4);
  a.push_back(6);
  a.push_back(4);
  Put16(a, op);
  PutMac(a, sender_mac);
  Put32(a, sender_ip.value);
  PutMac(a, target_mac);
  Put32(a, target_ip.value);
  return a;
}

// The TCP/UDP checksum covers a pseudo header of addresses, protocol and length.
uint16_t L4Checksum(Ipv4 src, Ipv4 dst, uint8_t proto, const Bytes& segment) {
  uint32_t sum = (src.value >> 16) + (src.value & 0xffff) + (dst.value >> 16) +
                 (dst.value & 0xffff) + proto + static_cast<uint32_t>(segment.size());
  return Checksum(segment, sum);
}

Bytes Ip(Ipv4 src, Ipv4 dst, uint8_t proto, Bytes l4) {
  Bytes ip;
  ip.push_back(0x45);
  ip.push_back(0);
  Put16(ip, static_cast<uint16_t>(20 + l4.size()));
  Put16(ip, 0x1234);  // id
  Put16(ip, 0x4000);  // DF
  ip.push_back(64);
  ip.push_back(proto);
  Put16(ip, 0);
  Put32(ip, src.value);
  Put32(ip, dst.value);
  uint16_t sum = Checksum(ip);
  ip[10] = static_cast<uint8_t>(sum >> 8);
  ip[11] = static_cast<uint8_t>(sum);
  ip.insert(ip.end(), l4.begin(), l4.end());
  return ip;
}

Bytes Udp(Ipv4 src, Ipv4 dst, uint16_t sport, uint16_t dport, const std::string& payload) {
  Bytes u;
  Put16(u, sport);
  Put16(u, dport);
  Put16(u, static_cast<uint16_t>(8 + payload.size()));
  Put16(u, 0);
  u.insert(u.end(), payload.begin(), payload.end());
  uint16_t sum = L4Checksum(src, dst, kProtoUdp, u);
  if (sum == 0) sum = 0xffff;
  u[6] = static_cast<uint8_t>(sum >> 8);
  u[7] = static_cast<uint8_t>(sum);
  return Ip(src, dst, kProtoUdp, std::move(u));
}

Bytes TcpSyn(Ipv4 src, Ipv4 dst, uint16_t sport, uint16_t dport) {
  Bytes t;
  Put16(t, sport);
  Put16(t, dport);
  Put32(t, 1000);  // seq
  Put32(t, 0);     // ack
  t.push_back(5 << 4);
  t.push_back(kTcpSyn);
  Put16(t, 64240);  // window
  Put16(t, 0);      // checksum
  Put16(t, 0);      // urgent
  uint16_t sum = L4Checksum(src, dst, kProtoTcp, t);
  t[16] = static_cast<uint8_t>(sum >> 8);
  t[17] = static_cast<uint8_t>(sum);
  return Ip(src, dst, kProtoTcp, std::move(t));
}

// What the test looks at in a frame the namespace sent to the guest.
struct Frame {
  Bytes raw;
  Mac src{};
  uint16_t type = 0;
  // ARP
  uint16_t arp_op = 0;
  Mac arp_sender_mac{};
  Ipv4 arp_sender_ip;
  Ipv4 arp_target_ip;
  // IPv4
  Ipv4 ip_src;
  Ipv4 ip_dst;
  uint8_t proto = 0;
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint8_t tcp_flags = 0;
  std::string udp_payload;
};

std::optional<Frame> Parse(Bytes raw) {
  if (raw.size() < 14) return std::nullopt;
  Frame f;
  f.src = GetMac(raw, 6);
  f.type = Get16(raw, 12);
  if (f.type == kEthArp && raw.size() >= 14 + 28) {
    f.arp_op = Get16(raw, 14 + 6);
    f.arp_sender_mac = GetMac(raw, 14 + 8);
    f.arp_sender_ip = Ipv4{Get32(raw, 14 + 14)};
    f.arp_target_ip = Ipv4{Get32(raw, 14 + 24)};
  } else if (f.type == kEthIpv4 && raw.size() >= 14 + 20) {
    size_t ihl = (raw[14] & 0x0f) * 4u;
    f.proto = raw[14 + 9];
    f.ip_src = Ipv4{Get32(raw, 14 + 12)};
    f.ip_dst = Ipv4{Get32(raw, 14 + 16)};
    size_t l4 = 14 + ihl;
    if ((f.proto == kProtoTcp || f.proto == kProtoUdp) && raw.size() >= l4 + 8) {
      f.sport = Get16(raw, l4);
      f.dport = Get16(raw, l4 + 2);
      if (f.proto == kProtoUdp) {
        f.udp_payload.assign(raw.begin() + static_cast<long>(l4 + 8), raw.end());
      } else if (raw.size() >= l4 + 14) {
        f.tcp_flags = raw[l4 + 13];
      }
    }
  }
  f.raw = std::move(raw);
  return f;
}

// The guest's side of the wire: writes frames to the tap fd and reads what the namespace sends,
// answering ARP requests for its own address on the way (as a guest kernel would).
class UserspaceGuest {
 public:
  UserspaceGuest(int tap_fd, Ipv4 ip) : fd_(tap_fd), ip_(ip) {}

  void Send(const Bytes& frame) {
    ASSERT_EQ(::write(fd_, frame.data(), frame.size()), static_cast<ssize_t>(frame.size()))
        << std::strerror(errno);
  }
  void SendIp(const Mac& gateway_mac, const Bytes& packet) {
    Send(Ethernet(gateway_mac, kGuestMac, kEthIpv4, packet));
  }

  // The first frame matching `match` within `guard`; frames before it go to seen().
  std::optional<Frame> WaitFor(const std::function<bool(const Frame&)>& match,
                               milliseconds guard = milliseconds(3000)) {
    auto deadline = std::chrono::steady_clock::now() + guard;
    for (;;) {
      auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      std::optional<Frame> frame = Receive(std::max<long>(left.count(), 0));
      if (!frame) return std::nullopt;
      if (match(*frame)) return frame;
      seen_.push_back(std::move(*frame));
    }
  }

  // Frames read so far that no WaitFor asked for (ARP requests answered excluded).
  const std::vector<Frame>& seen() const { return seen_; }

 private:
  std::optional<Frame> Receive(long timeout_ms) {
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(timeout_ms)) != 1) return std::nullopt;
      Bytes buf(2048);
      ssize_t n = ::read(fd_, buf.data(), buf.size());
      if (n <= 0) return std::nullopt;
      buf.resize(static_cast<size_t>(n));
      std::optional<Frame> f = Parse(std::move(buf));
      if (!f) continue;
      if (f->type == kEthArp && f->arp_op == 1 && f->arp_target_ip == ip_) {
        Send(Ethernet(f->arp_sender_mac, kGuestMac, kEthArp,
                      Arp(2, kGuestMac, ip_, f->arp_sender_mac, f->arp_sender_ip)));
        continue;
      }
      return f;
    }
  }

  int fd_;
  Ipv4 ip_;
  std::vector<Frame> seen_;
};

// ---- Namespaces ----

ino_t NsInode(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

ino_t ThreadNsInode() {
  UniqueFd fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  return NsInode(fd.get());
}

std::string ReadSysctlIn(int netns_fd, const char* path) {
  Result<std::string> text = RunInNetns(netns_fd, [&]() -> Result<std::string> {
    UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd) return FailErrno(path);
    char buf[64] = {};
    ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
    if (n < 0) return FailErrno(path);
    return std::string(buf, static_cast<size_t>(n));
  });
  return text ? *text : "<" + text.error().message() + ">";
}

// A socket of `type` in `netns_fd` bound to addr:port.
UniqueFd BoundSocket(int netns_fd, int type, Ipv4 addr, uint16_t port) {
  Result<UniqueFd> fd = SocketInNetns(netns_fd, AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  EXPECT_TRUE(fd) << fd.error().message();
  if (!fd) return UniqueFd();
  int one = 1;
  ::setsockopt(fd->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa = SockAddr(addr, port);
  EXPECT_EQ(::bind(fd->get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0)
      << "bind " << addr.ToString() << ":" << port << ": " << std::strerror(errno);
  return std::move(*fd);
}

struct Datagram {
  std::string payload;
  Ipv4 from;
  uint16_t from_port = 0;
};

std::optional<Datagram> ReceiveDatagram(int fd, milliseconds guard = milliseconds(3000)) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(guard.count())) != 1) return std::nullopt;
  char buf[2048];
  sockaddr_in from{};
  socklen_t len = sizeof from;
  ssize_t n = ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
  if (n < 0) return std::nullopt;
  return Datagram{std::string(buf, static_cast<size_t>(n)), Ipv4{ntohl(from.sin_addr.s_addr)},
                  ntohs(from.sin_port)};
}

bool DatagramWaiting(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

const Ipv4 kGateway = Addr("10.0.2.1");
const Ipv4 kGuest = Addr("10.0.2.2");
// The sandbox's eth0 and the fake internet (TEST-NET-2) on the other end of its veth.
const Ipv4 kSandboxEth0 = Addr("198.51.100.2");
const Ipv4 kInternet = Addr("198.51.100.1");

// A sandbox namespace as the vm runtime has it (eth0 to the "internet" namespace, default
// route through it) plus the guest link in it. The internet has no route back to 10.0.2.0/24,
// so the guest's traffic only comes back if the masquerade works. Everything lives in
// namespaces the test made; they vanish with their fds.
class GuestLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KILN_REQUIRE_ROOT();
    Result<NetNamespace> sbx = NetNamespace::Create();
    ASSERT_TRUE(sbx) << sbx.error().message();
    sandbox_ = std::move(*sbx);
    Result<NetNamespace> inet = NetNamespace::Create();
    ASSERT_TRUE(inet) << inet.error().message();
    internet_ = std::move(*inet);
    Status ok = ConnectInternet();
    ASSERT_TRUE(ok) << ok.error().message();
  }

  Status ConnectInternet() {
    KILN_ASSIGN_OR_RETURN(RtNetlink in_sbx, RtNetlink::OpenInNetns(sandbox_.get()));
    KILN_TRY(in_sbx.CreateVeth("eth0", "eth0", internet_.get()));
    KILN_ASSIGN_OR_RETURN(int eth0, in_sbx.LinkIndex("eth0"));
    KILN_ASSIGN_OR_RETURN(RtNetlink in_inet, RtNetlink::OpenInNetns(internet_.get()));
    KILN_ASSIGN_OR_RETURN(int wan, in_inet.LinkIndex("eth0"));
    KILN_TRY(in_inet.QueueLinkUp(1)
                 .QueueAddress(wan, kInternet, 24)
                 .QueueLinkUp(wan)
                 .QueueSyncLinkState(wan)
                 .Commit());
    KILN_TRY(in_sbx.QueueAddress(eth0, kSandboxEth0, 24)
                 .QueueLinkUp(eth0)
                 .QueueRoute(Ipv4Cidr{Ipv4{0}, 0}, kInternet)
                 .QueueSyncLinkState(eth0)
                 .Commit());
    return {};
  }

  // Creates the guest link and resolves the gateway's MAC as the guest (ARP).
  void StartGuest() {
    Result<UniqueFd> tap = CreateGuestLink(sandbox_.get(), GuestLinkConfig{});
    ASSERT_TRUE(tap) << tap.error().message();
    tap_ = std::move(*tap);
    guest_.emplace(tap_.get(), kGuest);
    guest_->Send(
        Ethernet(kBroadcast, kGuestMac, kEthArp, Arp(1, kGuestMac, kGuest, Mac{}, kGateway)));
    std::optional<Frame> reply =
        guest_->WaitFor([](const Frame& f) { return f.type == kEthArp && f.arp_op == 2; });
    ASSERT_TRUE(reply) << "no ARP reply from the gateway";
    EXPECT_EQ(reply->arp_sender_ip, kGateway);
    gateway_mac_ = reply->arp_sender_mac;
  }

  NetNamespace sandbox_;
  NetNamespace internet_;
  UniqueFd tap_;
  std::optional<UserspaceGuest> guest_;
  Mac gateway_mac_{};
};

TEST_F(GuestLinkTest, CreatesTapInTheNamespaceAndReturnsHome) {
  ino_t home = ThreadNsInode();
  std::string host_forward =
      ReadSysctlIn(NetNamespace::Current()->get(), "/proc/sys/net/ipv4/ip_forward");
  Result<UniqueFd> tap = CreateGuestLink(sandbox_.get(), GuestLinkConfig{});
  ASSERT_TRUE(tap) << tap.error().message();
  EXPECT_EQ(ThreadNsInode(), home);
  EXPECT_TRUE(::fcntl(tap->get(), F_GETFD) & FD_CLOEXEC);

  Result<RtNetlink> nl = RtNetlink::OpenInNetns(sandbox_.get());
  ASSERT_TRUE(nl);
  Result<std::vector<LinkInfo>> links = nl->ListLinks();
  ASSERT_TRUE(links);
  bool tap_up = false, lo_up = false;
  for (const LinkInfo& link : *links) {
    if (link.name == "tap0") tap_up = link.up;
    if (link.name == "lo") lo_up = link.up;
  }
  EXPECT_TRUE(tap_up);
  EXPECT_TRUE(lo_up);
  EXPECT_EQ(ReadSysctlIn(sandbox_.get(), "/proc/sys/net/ipv4/ip_forward"), "1\n");
  EXPECT_EQ(ReadSysctlIn(sandbox_.get(), "/proc/sys/net/ipv6/conf/tap0/disable_ipv6"), "1\n");
  // The host's own setting is untouched.
  EXPECT_EQ(ReadSysctlIn(NetNamespace::Current()->get(), "/proc/sys/net/ipv4/ip_forward"),
            host_forward);
  Result<RtNetlink> host = RtNetlink::Open();
  ASSERT_TRUE(host);
  // (The host may have its own tap0; what matters is that ours is in the sandbox.)
  EXPECT_TRUE(nl->LinkIndex("tap0"));

  // Not persistent: the tap goes with its last fd.
  tap->reset();
  Result<int> gone = nl->LinkIndex("tap0");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code(), Errc::kNotFound);
}

TEST_F(GuestLinkTest, SecondLinkOfTheSameNameFails) {
  Result<UniqueFd> first = CreateGuestLink(sandbox_.get(), GuestLinkConfig{});
  ASSERT_TRUE(first) << first.error().message();
  Result<UniqueFd> second = CreateGuestLink(sandbox_.get(), GuestLinkConfig{});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), Errc::kAlreadyExists) << second.error().message();
}

TEST_F(GuestLinkTest, OneGuestLinkPerNamespace) {
  Result<UniqueFd> first = CreateGuestLink(sandbox_.get(), GuestLinkConfig{});
  ASSERT_TRUE(first) << first.error().message();
  GuestLinkConfig other;
  other.ifname = "tap1";
  Result<UniqueFd> second = CreateGuestLink(sandbox_.get(), other);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message().find("kiln_guest"), std::string::npos)
      << second.error().message();
  // The failed attempt's tap went with its fd; the first link's table is intact.
  Result<RtNetlink> nl = RtNetlink::OpenInNetns(sandbox_.get());
  ASSERT_TRUE(nl);
  EXPECT_FALSE(nl->LinkIndex("tap1"));
  EXPECT_TRUE(nl->LinkIndex("tap0"));
  Result<std::string> table = RunInNetns(sandbox_.get(), []() -> Result<std::string> {
    KILN_ASSIGN_OR_RETURN(NftContext nft, NftContext::Create());
    return nft.Query("list table inet kiln_guest\n");
  });
  ASSERT_TRUE(table) << table.error().message();
  EXPECT_NE(table->find("\"tap0\""), std::string::npos) << *table;
}

TEST_F(GuestLinkTest, RejectsBadConfig) {
  GuestLinkConfig bad_name;
  bad_name.ifname = "tap 0\"";
  EXPECT_EQ(CreateGuestLink(sandbox_.get(), bad_name).error().code(), Errc::kInvalidArgument);
  for (const char* cidr : {"10.0.2.1", "10.0.2.1/33", "10.0.2.0/24", "10.0.2.255/24", "10.0.2.1/x",
                           "10.0.2/24", "10.0.2.1/31"}) {
    GuestLinkConfig config;
    config.host_cidr = cidr;
    Result<UniqueFd> r = CreateGuestLink(sandbox_.get(), config);
    ASSERT_FALSE(r) << cidr;
    EXPECT_EQ(r.error().code(), Errc::kInvalidArgument) << cidr << ": " << r.error().message();
  }
}

TEST_F(GuestLinkTest, GuestReachesTheDnsRelayAndGetsItsAnswer) {
  ASSERT_NO_FATAL_FAILURE(StartGuest());
  UniqueFd relay = BoundSocket(sandbox_.get(), SOCK_DGRAM, kGateway, 53);
  guest_->SendIp(gateway_mac_, Udp(kGuest, kGateway, 40000, 53, "query"));
  std::optional<Datagram> got = ReceiveDatagram(relay.get());
  ASSERT_TRUE(got) << "the relay got nothing";
  EXPECT_EQ(got->payload, "query");
  EXPECT_EQ(got->from, kGuest);
  EXPECT_EQ(got->from_port, 40000);

  sockaddr_in to = SockAddr(kGuest, 40000);
  ASSERT_EQ(::sendto(relay.get(), "answer", 6, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 6);
  std::optional<Frame> answer =
      guest_->WaitFor([](const Frame& f) { return f.proto == kProtoUdp && f.dport == 40000; });
  ASSERT_TRUE(answer) << "no answer reached the guest";
  EXPECT_EQ(answer->ip_src, kGateway);
  EXPECT_EQ(answer->sport, 53);
  EXPECT_EQ(answer->udp_payload, "answer");
}

TEST_F(GuestLinkTest, GuestCannotOpenOtherConnectionsToTheNamespace) {
  ASSERT_NO_FATAL_FAILURE(StartGuest());
  // A service listening in the namespace on the gateway address and on eth0's address.
  UniqueFd ssh = BoundSocket(sandbox_.get(), SOCK_STREAM, kGateway, 22);
  ASSERT_EQ(::listen(ssh.get(), 4), 0);
  UniqueFd any = BoundSocket(sandbox_.get(), SOCK_STREAM, Ipv4{0}, 8080);
  ASSERT_EQ(::listen(any.get(), 4), 0);
  UniqueFd relay = BoundSocket(sandbox_.get(), SOCK_DGRAM, kGateway, 53);

  // Control: TCP to the DNS port passes the firewall (nobody listens there: a reset).
  guest_->SendIp(gateway_mac_, TcpSyn(kGuest, kGateway, 40001, 53));
  std::optional<Frame> rst =
      guest_->WaitFor([](const Frame& f) { return f.proto == kProtoTcp && f.dport == 40001; });
  ASSERT_TRUE(rst) << "TCP to port 53 got no answer";
  EXPECT_EQ(rst->tcp_flags & (kTcpRst | kTcpAck), kTcpRst | kTcpAck);

  long segments = TcpSegmentsReceived(sandbox_.get());
  guest_->SendIp(gateway_mac_, TcpSyn(kGuest, kGateway, 40002, 22));
  guest_->SendIp(gateway_mac_, TcpSyn(kGuest, kSandboxEth0, 40003, 8080));
  guest_->SendIp(gateway_mac_, Udp(kGuest, kGateway, 40004, 5353, "mdns"));
  // A barrier: the namespace handles the guest's frames in order, so once this datagram has
  // arrived, the ones before it were handled (and dropped).
  guest_->SendIp(gateway_mac_, Udp(kGuest, kGateway, 40005, 53, "barrier"));
  std::optional<Datagram> barrier = ReceiveDatagram(relay.get());
  ASSERT_TRUE(barrier);
  EXPECT_EQ(barrier->payload, "barrier");
  EXPECT_EQ(TcpSegmentsReceived(sandbox_.get()), segments) << "a SYN reached TCP";
  EXPECT_FALSE(testing::HasPendingConnection({std::move(ssh), 22}));
  EXPECT_FALSE(testing::HasPendingConnection({std::move(any), 8080}));
  for (const Frame& f : guest_->seen()) {
    EXPECT_NE(f.proto, kProtoTcp) << "a TCP answer to port " << f.dport;
  }
}

TEST_F(GuestLinkTest, GuestTrafficLeavesWithTheSandboxAddress) {
  ASSERT_NO_FATAL_FAILURE(StartGuest());
  UniqueFd server = BoundSocket(internet_.get(), SOCK_DGRAM, kInternet, 0);
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  ASSERT_EQ(::getsockname(server.get(), reinterpret_cast<sockaddr*>(&bound), &len), 0);
  uint16_t port = ntohs(bound.sin_port);

  guest_->SendIp(gateway_mac_, Udp(kGuest, kInternet, 41000, port, "hello"));
  std::optional<Datagram> got = ReceiveDatagram(server.get());
  ASSERT_TRUE(got) << "nothing arrived at the fake internet";
  EXPECT_EQ(got->payload, "hello");
  EXPECT_EQ(got->from, kSandboxEth0) << "not masqueraded: " << got->from.ToString();

  // The reply finds its way back to the guest (un-NATed by conntrack).
  sockaddr_in to = SockAddr(got->from, got->from_port);
  ASSERT_EQ(::sendto(server.get(), "world", 5, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 5);
  std::optional<Frame> reply =
      guest_->WaitFor([](const Frame& f) { return f.proto == kProtoUdp && f.sport != 53; });
  ASSERT_TRUE(reply) << "the reply did not reach the guest";
  EXPECT_EQ(reply->ip_src, kInternet);
  EXPECT_EQ(reply->ip_dst, kGuest);
  EXPECT_EQ(reply->dport, 41000);
  EXPECT_EQ(reply->udp_payload, "world");
}

TEST_F(GuestLinkTest, SpoofedSourcesAreNotForwarded) {
  ASSERT_NO_FATAL_FAILURE(StartGuest());
  UniqueFd server = BoundSocket(internet_.get(), SOCK_DGRAM, kInternet, 0);
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  ASSERT_EQ(::getsockname(server.get(), reinterpret_cast<sockaddr*>(&bound), &len), 0);
  uint16_t port = ntohs(bound.sin_port);

  guest_->SendIp(gateway_mac_, Udp(Addr("192.0.2.77"), kInternet, 41001, port, "spoofed"));
  guest_->SendIp(gateway_mac_, Udp(kGuest, kInternet, 41002, port, "barrier"));
  std::optional<Datagram> got = ReceiveDatagram(server.get());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->payload, "barrier");
  EXPECT_FALSE(DatagramWaiting(server.get()));
}

TEST_F(GuestLinkTest, WithoutMasqueradeTheGuestAddressLeavesAsIs) {
  GuestLinkConfig config;
  config.masquerade = false;
  EXPECT_EQ(GuestRuleset("tap0", "10.0.2.1", "10.0.2.0/24", false).find("masquerade"),
            std::string::npos);
  Result<UniqueFd> tap = CreateGuestLink(sandbox_.get(), config);
  ASSERT_TRUE(tap) << tap.error().message();
  Result<std::string> table = RunInNetns(sandbox_.get(), []() -> Result<std::string> {
    KILN_ASSIGN_OR_RETURN(NftContext nft, NftContext::Create());
    return nft.Query("list table inet kiln_guest\n");
  });
  ASSERT_TRUE(table) << table.error().message();
  EXPECT_EQ(table->find("masquerade"), std::string::npos) << *table;
  EXPECT_NE(table->find("udp dport 53 accept"), std::string::npos) << *table;
}

// CreateGuestLink is on the sandbox create path (unless links are pooled): report its cost.
TEST_F(GuestLinkTest, Cost) {
  constexpr int kRuns = 20;
  std::vector<double> ms;
  for (int i = 0; i < kRuns; ++i) {
    Result<NetNamespace> ns = NetNamespace::Create();
    ASSERT_TRUE(ns);
    auto start = std::chrono::steady_clock::now();
    Result<UniqueFd> tap = CreateGuestLink(ns->get(), GuestLinkConfig{});
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
    ASSERT_TRUE(tap) << tap.error().message();
  }
  std::sort(ms.begin(), ms.end());
  std::printf("CreateGuestLink: median %.2f ms, min %.2f, max %.2f (%d runs)\n", ms[kRuns / 2],
              ms.front(), ms.back(), kRuns);
  EXPECT_LT(ms[kRuns / 2], 100.0);
}

}  // namespace
}  // namespace kiln::kilnd::net
