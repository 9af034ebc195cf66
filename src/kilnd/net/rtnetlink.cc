#include "kilnd/net/rtnetlink.h"

#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "kilnd/net/netns.h"

namespace kiln::kilnd::net {
namespace {

// Upper bound of one request we build (the veth request is the largest, ~120 bytes).
constexpr size_t kMaxRequest = 512;
constexpr size_t kQueueBytes = 16 * kMaxRequest;
// Large enough for any single message the kernel sends us (link dumps come in pieces).
constexpr size_t kReceiveBytes = 32 * 1024;
// A guard only: the kernel answers every request at once.
constexpr int kReplyTimeoutSeconds = 5;

Status CheckIfName(std::string_view name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return Fail(Errc::kInvalidArgument, "interface name '" + std::string(name) + "' must have 1.." +
                                            std::to_string(IFNAMSIZ - 1) + " characters");
  }
  return {};
}

void PutIfName(nlmsghdr* nlh, std::string_view name) {
  char buf[IFNAMSIZ] = {};
  std::memcpy(buf, name.data(), std::min(name.size(), sizeof buf - 1));
  mnl_attr_put_strz(nlh, IFLA_IFNAME, buf);
}

// The extended-ack text of an NLMSG_ERROR ("veth: Peer ifname is too long"), or "".
std::string ExtAckMessage(const nlmsghdr* nlh) {
  if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) return {};
  size_t offset = sizeof(nlmsgerr);
  if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) {
    const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
    offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
  }
  std::string text;
  mnl_attr_parse(
      nlh, static_cast<unsigned>(offset),
      [](const nlattr* attr, void* data) {
        if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
            mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0) {
          *static_cast<std::string*>(data) = mnl_attr_get_str(attr);
        }
        return MNL_CB_OK;
      },
      &text);
  return text;
}

Error NetlinkError(const nlmsghdr* nlh, int err, std::string_view what) {
  Error e = Error::FromErrno(err, what);
  std::string ext = ExtAckMessage(nlh);
  if (!ext.empty()) e = Error(e.code(), e.message() + " (" + ext + ")", err);
  return e;
}

}  // namespace

RtNetlink::RtNetlink(UniqueFd fd) : fd_(std::move(fd)), queue_(kQueueBytes) {}

Result<RtNetlink> RtNetlink::Open() {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) return FailErrno("socket(NETLINK_ROUTE)");
  // Acks carry only the header of the request (not its copy) plus the kernel's error text.
  int one = 1;
  ::setsockopt(fd.get(), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  ::setsockopt(fd.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  timeval tv{kReplyTimeoutSeconds, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return RtNetlink(std::move(fd));
}

Result<RtNetlink> RtNetlink::OpenInNetns(int netns_fd) {
  // Only socket() must happen inside: a netlink socket acts on the netns it was created in.
  return RunInNetns(netns_fd, [] { return Open(); });
}

nlmsghdr* RtNetlink::Begin(uint16_t type, uint16_t flags, std::string what) {
  if (!queue_error_.empty()) return nullptr;
  if (queue_.size() - used_ < kMaxRequest) {
    queue_error_ = "too many queued netlink requests (at " + what + ")";
    return nullptr;
  }
  if (pending_.empty()) first_seq_ = next_seq_;
  nlmsghdr* nlh = mnl_nlmsg_put_header(queue_.data() + used_);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  nlh->nlmsg_seq = next_seq_++;
  pending_.push_back(std::move(what));
  return nlh;
}

void RtNetlink::End(nlmsghdr* nlh) { used_ += MNL_ALIGN(nlh->nlmsg_len); }

RtNetlink& RtNetlink::QueueCreateVeth(std::string_view name, std::string_view peer_name,
                                      int peer_netns_fd) {
  if (auto ok = CheckIfName(name); !ok) {
    queue_error_ = ok.error().message();
    return *this;
  }
  if (auto ok = CheckIfName(peer_name); !ok) {
    queue_error_ = ok.error().message();
    return *this;
  }
  nlmsghdr* nlh = Begin(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, "create veth " + std::string(name));
  if (nlh == nullptr) return *this;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  PutIfName(nlh, name);
  nlattr* linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
  nlattr* data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
  nlattr* peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
  // VETH_INFO_PEER holds an ifinfomsg followed by the peer's own link attributes.
  auto* peer_ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  peer_ifm->ifi_family = AF_UNSPEC;
  PutIfName(nlh, peer_name);
  mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, static_cast<uint32_t>(peer_netns_fd));
  mnl_attr_nest_end(nlh, peer);
  mnl_attr_nest_end(nlh, data);
  mnl_attr_nest_end(nlh, linkinfo);
  End(nlh);
  return *this;
}

RtNetlink& RtNetlink::QueueLinkUp(int ifindex) {
  nlmsghdr* nlh = Begin(RTM_NEWLINK, 0, "set link " + std::to_string(ifindex) + " up");
  if (nlh == nullptr) return *this;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = ifindex;
  ifm->ifi_flags = IFF_UP;
  ifm->ifi_change = IFF_UP;
  End(nlh);
  return *this;
}

RtNetlink& RtNetlink::QueueAddress(int ifindex, Ipv4 addr, int prefix_len) {
  nlmsghdr* nlh = Begin(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                        "add address " + addr.ToString() + "/" + std::to_string(prefix_len) +
                            " to link " + std::to_string(ifindex));
  if (nlh == nullptr) return *this;
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = static_cast<unsigned char>(prefix_len);
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = static_cast<unsigned>(ifindex);
  in_addr in = addr.ToInAddr();
  mnl_attr_put(nlh, IFA_LOCAL, sizeof in, &in);
  mnl_attr_put(nlh, IFA_ADDRESS, sizeof in, &in);
  End(nlh);
  return *this;
}

RtNetlink& RtNetlink::QueueRoute(Ipv4Cidr dest, Ipv4 gateway) {
  nlmsghdr* nlh = Begin(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                        "add route " + dest.ToString() + " via " + gateway.ToString());
  if (nlh == nullptr) return *this;
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rtm->rtm_family = AF_INET;
  rtm->rtm_dst_len = static_cast<unsigned char>(dest.prefix_len);
  rtm->rtm_table = RT_TABLE_MAIN;
  rtm->rtm_protocol = RTPROT_STATIC;
  rtm->rtm_scope = RT_SCOPE_UNIVERSE;
  rtm->rtm_type = RTN_UNICAST;
  if (dest.prefix_len > 0) {
    in_addr dst = dest.network.ToInAddr();
    mnl_attr_put(nlh, RTA_DST, sizeof dst, &dst);
  }
  in_addr gw = gateway.ToInAddr();
  mnl_attr_put(nlh, RTA_GATEWAY, sizeof gw, &gw);
  End(nlh);
  return *this;
}

RtNetlink& RtNetlink::QueueDeleteLink(int ifindex) {
  nlmsghdr* nlh = Begin(RTM_DELLINK, 0, "delete link " + std::to_string(ifindex));
  if (nlh == nullptr) return *this;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = ifindex;
  End(nlh);
  return *this;
}

RtNetlink& RtNetlink::QueueSyncLinkState(int ifindex) {
  nlmsghdr* nlh = Begin(RTM_GETLINK, 0, "query link " + std::to_string(ifindex));
  if (nlh == nullptr) return *this;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = ifindex;
  mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  End(nlh);
  return *this;
}

Result<size_t> RtNetlink::Receive(std::string_view what) {
  if (rx_.empty()) rx_.resize(kReceiveBytes);
  for (;;) {
    ssize_t n = ::recv(fd_.get(), rx_.data(), rx_.size(), 0);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) return Fail(Errc::kInternal, std::string(what) + ": netlink socket closed");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return Fail(Errc::kTimeout, std::string(what) + ": no netlink reply");
    }
    return FailErrno(std::string(what) + ": recv netlink");
  }
}

Status RtNetlink::Commit() {
  std::vector<std::string> pending = std::move(pending_);
  pending_.clear();
  size_t used = std::exchange(used_, 0);
  if (!queue_error_.empty()) {
    return Fail(Errc::kInvalidArgument, std::exchange(queue_error_, std::string()));
  }
  if (pending.empty()) return {};
  std::string_view what = pending.front();
  if (::send(fd_.get(), queue_.data(), used, 0) != static_cast<ssize_t>(used)) {
    return FailErrno(std::string(what) + ": send netlink");
  }
  std::optional<Error> first_error;
  size_t acked = 0;
  while (acked < pending.size()) {
    KILN_ASSIGN_OR_RETURN(size_t len, Receive(what));
    int remaining = static_cast<int>(len);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(rx_.data()); mnl_nlmsg_ok(nlh, remaining);
         nlh = mnl_nlmsg_next(nlh, &remaining)) {
      uint32_t index = nlh->nlmsg_seq - first_seq_;
      if (nlh->nlmsg_type != NLMSG_ERROR || index >= pending.size()) continue;
      ++acked;
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      if (err->error != 0 && !first_error) {
        first_error = NetlinkError(nlh, -err->error, pending[index]);
      }
    }
  }
  if (first_error) return std::unexpected(std::move(*first_error));
  return {};
}

template <typename OnReply>
Status RtNetlink::Exchange(nlmsghdr* nlh, std::string_view what, OnReply&& on_reply) {
  if (::send(fd_.get(), nlh, nlh->nlmsg_len, 0) != static_cast<ssize_t>(nlh->nlmsg_len)) {
    return FailErrno(std::string(what) + ": send netlink");
  }
  for (;;) {
    KILN_ASSIGN_OR_RETURN(size_t len, Receive(what));
    int remaining = static_cast<int>(len);
    for (auto* reply = reinterpret_cast<const nlmsghdr*>(rx_.data());
         mnl_nlmsg_ok(reply, remaining); reply = mnl_nlmsg_next(reply, &remaining)) {
      if (reply->nlmsg_seq != nlh->nlmsg_seq) continue;
      if (reply->nlmsg_type == NLMSG_DONE) return {};
      if (reply->nlmsg_type == NLMSG_ERROR) {
        const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(reply));
        if (err->error != 0) return std::unexpected(NetlinkError(reply, -err->error, what));
        return {};
      }
      on_reply(reply);
    }
  }
}

namespace {

struct ParsedLink {
  LinkInfo info;
  bool ok = false;
};

ParsedLink ParseLink(const nlmsghdr* nlh) {
  ParsedLink out;
  if (nlh->nlmsg_type != RTM_NEWLINK) return out;
  const auto* ifm = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
  out.info.index = ifm->ifi_index;
  out.info.up = (ifm->ifi_flags & IFF_UP) != 0;
  mnl_attr_parse(
      nlh, sizeof(ifinfomsg),
      [](const nlattr* attr, void* data) {
        if (mnl_attr_get_type(attr) == IFLA_IFNAME &&
            mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0) {
          static_cast<LinkInfo*>(data)->name = mnl_attr_get_str(attr);
        }
        return MNL_CB_OK;
      },
      &out.info);
  out.ok = true;
  return out;
}

}  // namespace

Result<int> RtNetlink::LinkIndex(std::string_view name) {
  KILN_TRY(CheckIfName(name));
  alignas(nlmsghdr) char buf[kMaxRequest];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_GETLINK;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  nlh->nlmsg_seq = next_seq_++;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  PutIfName(nlh, name);
  // Skip the statistics the kernel would otherwise add to the reply.
  mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  std::string what = "find link " + std::string(name);
  int index = 0;
  Status sent = Exchange(nlh, what, [&](const nlmsghdr* reply) {
    if (ParsedLink link = ParseLink(reply); link.ok) index = link.info.index;
  });
  if (!sent && sent.error().sys_errno() == ENODEV) {
    return Fail(Errc::kNotFound, what + ": no such interface");
  }
  KILN_TRY(sent);
  if (index <= 0) return Fail(Errc::kNotFound, what + ": no such interface");
  return index;
}

Result<std::vector<LinkInfo>> RtNetlink::ListLinks() {
  alignas(nlmsghdr) char buf[kMaxRequest];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_GETLINK;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = next_seq_++;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  std::vector<LinkInfo> links;
  KILN_TRY(Exchange(nlh, "list links", [&](const nlmsghdr* reply) {
    if (ParsedLink link = ParseLink(reply); link.ok) links.push_back(std::move(link.info));
  }));
  return links;
}

}  // namespace kiln::kilnd::net
