#include "kilnd/net/host_network.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "base/log.h"
#include "base/scope_exit.h"
#include "base/unique_fd.h"
#include "kilnd/net/netns.h"
#include "kilnd/net/nftables.h"
#include "kilnd/net/rtnetlink.h"
#include "kilnd/net/ruleset.h"
#include "kilnd/net/slot_pool.h"

namespace kiln::kilnd::net {

// Everything HostNetwork and its links share. Links keep it alive, so a link destroyed after
// its HostNetwork finds `closed` set instead of a dangling pointer.
struct HostNetwork::State {
  NetworkConfig config;
  Ipv4Cidr subnet;
  std::string prefix;  // "<name>-"

  std::mutex slots_mu;
  SlotPool slots;  // guarded by slots_mu

  std::mutex nft_mu;
  NftContext nft;       // guarded by nft_mu
  bool closed = false;  // guarded by nft_mu: the table is gone

  State(NetworkConfig c, Ipv4Cidr s, uint32_t slot_count, NftContext n)
      : config(std::move(c)),
        subnet(s),
        prefix(config.name + "-"),
        slots(slot_count),
        nft(std::move(n)) {}
};

namespace {

constexpr size_t kMaxIfName = 15;  // IFNAMSIZ - 1
constexpr std::string_view kSandboxIfName = "eth0";
constexpr int kLoopbackIndex = 1;  // LOOPBACK_IFINDEX: lo is ifindex 1 in every namespace
// How many slots Attach tries when it finds the veth name of a free slot still taken (by a
// namespace the kernel has not finished destroying).
constexpr int kMaxBusySlots = 64;

Status ValidateName(const std::string& name) {
  bool ok = !name.empty() && name[0] >= 'a' && name[0] <= 'z';
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  }
  if (!ok) {
    return Fail(Errc::kInvalidArgument, "network name '" + name +
                                            "' must be [a-z][a-z0-9_]* (it names nft tables and "
                                            "interfaces)");
  }
  return {};
}

struct SlotLayout {
  Ipv4Cidr subnet;
  uint32_t slot_count = 0;
  std::vector<Ipv4Cidr> blocked_extra;
};

Result<SlotLayout> ValidateConfig(const NetworkConfig& config) {
  KILN_TRY(ValidateName(config.name));
  KILN_ASSIGN_OR_RETURN(Ipv4Cidr subnet, ParseIpv4Cidr(config.subnet));
  if (subnet.prefix_len < 8 || subnet.prefix_len > 30) {
    return Fail(Errc::kInvalidArgument,
                "network subnet " + config.subnet + ": prefix length must be 8..30");
  }
  uint32_t slot_count = uint32_t{1} << (30 - subnet.prefix_len);
  std::string longest = config.name + "-" + std::to_string(slot_count - 1);
  if (longest.size() > kMaxIfName) {
    return Fail(Errc::kInvalidArgument, "network name '" + config.name + "' is too long for " +
                                            std::to_string(slot_count) + " slots: interface '" +
                                            longest + "' exceeds 15 characters");
  }
  std::vector<Ipv4Cidr> blocked_extra;
  for (const std::string& text : config.blocked_extra) {
    Result<Ipv4Cidr> prefix = ParseIpv4Cidr(text);
    if (!prefix) return std::unexpected(std::move(prefix).error().Wrap("blocked_extra"));
    blocked_extra.push_back(*prefix);
  }
  return SlotLayout{subnet, slot_count, std::move(blocked_extra)};
}

// Turns on IPv4 forwarding (net.ipv4.ip_forward) for the host: sandbox traffic is routed
// through the host. This is the one host sysctl kilnd changes, and it leaves it on at exit
// (other instances may rely on it).
Status EnableIpForward() {
  constexpr const char* kPath = "/proc/sys/net/ipv4/ip_forward";
  UniqueFd fd(::open(kPath, O_RDWR | O_CLOEXEC));
  if (!fd) return FailErrno(std::string("open ") + kPath);
  char current = 0;
  if (::pread(fd.get(), &current, 1, 0) == 1 && current == '1') return {};
  if (::pwrite(fd.get(), "1\n", 2, 0) != 2) return FailErrno(std::string("write ") + kPath);
  return {};
}

// Writes "1" to a sysctl file of the calling thread's network namespace; a missing file
// (kernel without IPv6) is fine.
Status WriteSysctlOne(const char* path) {
  UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return {};
    return FailErrno(std::string("open ") + path);
  }
  if (::write(fd.get(), "1\n", 2) != 2) return FailErrno(std::string("write ") + path);
  return {};
}

// Inside the sandbox namespace: IPv6 off (the default for interfaces created later, such as
// eth0, and for the existing ones), and a netlink socket that acts there.
Result<RtNetlink> PrepareSandboxNetns(int netns_fd) {
  return RunInNetns(netns_fd, []() -> Result<RtNetlink> {
    // /proc/sys/net shows the namespace of the thread that opens the file.
    KILN_TRY(WriteSysctlOne("/proc/sys/net/ipv6/conf/default/disable_ipv6"));
    KILN_TRY(WriteSysctlOne("/proc/sys/net/ipv6/conf/all/disable_ipv6"));
    return RtNetlink::Open();
  });
}

}  // namespace

Result<std::unique_ptr<HostNetwork>> HostNetwork::Setup(const NetworkConfig& config) {
  KILN_ASSIGN_OR_RETURN(SlotLayout layout, ValidateConfig(config));
  KILN_ASSIGN_OR_RETURN(NftContext nft, NftContext::Create());
  std::string prefix = config.name + "-";
  if (auto ok = nft.Run(HostRuleset(config.name, prefix, layout.subnet, layout.blocked_extra));
      !ok) {
    return std::unexpected(std::move(ok).error().Wrap("create table inet " + config.name));
  }
  auto state = std::make_shared<State>(config, layout.subnet, layout.slot_count, std::move(nft));
  // From here on the destructor removes the table, also when forwarding cannot be enabled.
  std::unique_ptr<HostNetwork> network(new HostNetwork(std::move(state)));
  KILN_TRY(EnableIpForward());
  KILN_LOG(Info, "host network ready", {"table", "inet " + config.name},
           {"subnet", layout.subnet.ToString()}, {"interfaces", prefix + "*"});
  return network;
}

Status HostNetwork::RemoveLeftovers(const std::string& name) {
  KILN_TRY(ValidateName(name));
  KILN_ASSIGN_OR_RETURN(NftContext nft, NftContext::Create());
  if (auto ok = nft.Run(RemoveTableCommands(name)); !ok) {
    return std::unexpected(std::move(ok).error().Wrap("remove table inet " + name));
  }
  return {};
}

HostNetwork::~HostNetwork() {
  std::lock_guard lock(state_->nft_mu);
  state_->closed = true;
  if (auto ok = state_->nft.Run(RemoveTableCommands(state_->config.name)); !ok) {
    KILN_LOG(Warn, "cannot remove nftables table", {"table", "inet " + state_->config.name},
             {"error", ok.error().message()});
  }
}

const NetworkConfig& HostNetwork::config() const { return state_->config; }

std::string HostNetwork::ifname_prefix() const { return state_->prefix; }

namespace {

// A slot taken from the pool; returned on destruction unless Release()d to a SandboxLink.
class SlotLease {
 public:
  static Result<SlotLease> Acquire(HostNetwork::State& state) {
    std::lock_guard lock(state.slots_mu);
    std::optional<uint32_t> slot = state.slots.Acquire();
    if (!slot) {
      return Fail(Errc::kResourceExhausted, "sandbox subnet " + state.subnet.ToString() +
                                                " is full (" + std::to_string(state.slots.size()) +
                                                " slots)");
    }
    return SlotLease(&state, *slot);
  }
  SlotLease(SlotLease&& o) noexcept : state_(std::exchange(o.state_, nullptr)), slot_(o.slot_) {}
  SlotLease& operator=(SlotLease&&) = delete;
  ~SlotLease() {
    if (state_ == nullptr) return;
    std::lock_guard lock(state_->slots_mu);
    state_->slots.Release(slot_);
  }
  uint32_t slot() const { return slot_; }
  uint32_t Release() {
    state_ = nullptr;
    return slot_;
  }

 private:
  SlotLease(HostNetwork::State* state, uint32_t slot) : state_(state), slot_(slot) {}
  HostNetwork::State* state_;
  uint32_t slot_;
};

struct Veth {
  SlotLease lease;
  std::string name;  // host side
  int index = 0;     // host side
};

// Creates `<prefix><slot>` here and `eth0` inside `netns_fd` for a free slot. A slot whose name
// is still taken (its previous namespace is being destroyed, or a previous kilnd's sandbox is
// still alive) is skipped.
Result<Veth> CreateVethInFreeSlot(HostNetwork::State& state, RtNetlink& host, int netns_fd) {
  for (int attempt = 0; attempt < kMaxBusySlots; ++attempt) {
    KILN_ASSIGN_OR_RETURN(SlotLease lease, SlotLease::Acquire(state));
    std::string name = state.prefix + std::to_string(lease.slot());
    Status created = host.CreateVeth(name, kSandboxIfName, netns_fd);
    if (created) {
      KILN_ASSIGN_OR_RETURN(int index, host.LinkIndex(name));
      return Veth{std::move(lease), std::move(name), index};
    }
    if (created.error().sys_errno() != EEXIST) return std::unexpected(std::move(created).error());
    Result<int> existing = host.LinkIndex(name);
    if (!existing && existing.error().code() == Errc::kNotFound) {
      return Fail(Errc::kAlreadyExists, "sandbox network namespace already has an interface " +
                                            std::string(kSandboxIfName));
    }
    KILN_TRY(existing);
    KILN_LOG(Debug, "sandbox veth name still taken; trying the next slot", {"ifname", name});
  }
  return Fail(Errc::kResourceExhausted,
              "no free sandbox slot: " + std::to_string(kMaxBusySlots) + " still in use");
}

}  // namespace

Result<std::unique_ptr<SandboxLink>> HostNetwork::Attach(int netns_fd, bool internet) {
  KILN_ASSIGN_OR_RETURN(RtNetlink inner, PrepareSandboxNetns(netns_fd));
  KILN_ASSIGN_OR_RETURN(RtNetlink host, RtNetlink::Open());
  KILN_ASSIGN_OR_RETURN(Veth veth, CreateVethInFreeSlot(*state_, host, netns_fd));
  uint32_t slot = veth.lease.slot();
  Ipv4 host_addr{state_->subnet.network.value + 4 * slot + 1};
  Ipv4 sandbox_addr{host_addr.value + 1};
  std::unique_ptr<SandboxLink> link(new SandboxLink(state_, veth.lease.Release(), veth.name,
                                                    host_addr, sandbox_addr, /*internet=*/true));
  // On failure the half-made veth goes before the link frees its slot: the namespace may live
  // on, and the slot's name and addresses must be free for the next sandbox.
  bool done = false;
  ScopeExit undo([&] {
    if (!done) (void)host.DeleteLink(veth.index);
  });
  // Blocked before any link is up, so a sandbox without internet never has a moment with it.
  if (!internet) KILN_TRY(link->SetInternet(false));
  if (auto ok = host.QueueAddress(veth.index, host_addr, 30).QueueLinkUp(veth.index).Commit();
      !ok) {
    return std::unexpected(std::move(ok).error().Wrap("host side " + veth.name));
  }
  Result<int> eth0 = inner.LinkIndex(kSandboxIfName);
  if (!eth0) return std::unexpected(std::move(eth0).error().Wrap("sandbox side"));
  if (auto ok = inner.QueueLinkUp(kLoopbackIndex)
                    .QueueAddress(*eth0, sandbox_addr, 30)
                    .QueueLinkUp(*eth0)
                    .QueueRoute(Ipv4Cidr{Ipv4{0}, 0}, host_addr)
                    .QueueSyncLinkState(*eth0)
                    .Commit();
      !ok) {
    return std::unexpected(std::move(ok).error().Wrap("sandbox side"));
  }
  // The host end's carrier came on with eth0 just now.
  if (auto ok = host.QueueSyncLinkState(veth.index).Commit(); !ok) {
    return std::unexpected(std::move(ok).error().Wrap("host side " + veth.name));
  }
  done = true;
  return link;
}

SandboxLink::SandboxLink(std::shared_ptr<HostNetwork::State> state, uint32_t slot,
                         std::string host_ifname, Ipv4 host_address, Ipv4 sandbox_address,
                         bool internet)
    : state_(std::move(state)),
      slot_(slot),
      host_ifname_(std::move(host_ifname)),
      host_address_(host_address),
      sandbox_address_(sandbox_address),
      internet_(internet) {}

SandboxLink::~SandboxLink() {
  bool reusable = true;
  {
    std::lock_guard lock(state_->nft_mu);
    if (!state_->closed && !internet_) {
      Status ok = state_->nft.Run(DeleteNoInternetCommand(state_->config.name, sandbox_address_));
      if (!ok) {
        // The address stays blocked; keep its slot out of use rather than give the next
        // sandbox an address without internet it did not ask for.
        reusable = false;
        KILN_LOG(Warn, "cannot remove sandbox from no_internet; its slot stays retired",
                 {"address", sandbox_address_.ToString()}, {"error", ok.error().message()});
      }
    }
  }
  if (reusable) {
    std::lock_guard lock(state_->slots_mu);
    state_->slots.Release(slot_);
  }
}

Status SandboxLink::SetInternet(bool allow) {
  std::lock_guard lock(state_->nft_mu);
  if (state_->closed) {
    return Fail(Errc::kFailedPrecondition, "host network " + state_->config.name + " is shut down");
  }
  if (allow == internet_) return {};
  const std::string& table = state_->config.name;
  Status ok = state_->nft.Run(allow ? DeleteNoInternetCommand(table, sandbox_address_)
                                    : AddNoInternetCommand(table, sandbox_address_));
  if (!ok) {
    return std::unexpected(std::move(ok).error().Wrap(
        std::string(allow ? "allow" : "block") + " internet for " + sandbox_address_.ToString()));
  }
  internet_ = allow;
  return {};
}

bool SandboxLink::internet() const {
  std::lock_guard lock(state_->nft_mu);
  return internet_;
}

}  // namespace kiln::kilnd::net
