// kilnd: the kiln host daemon. Parses flags, opens the state, builds the base template if
// needed, wires runtime + orchestrator + API + proxy onto one listener, and runs.

#include <arpa/inet.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "base/log.h"
#include "http/server.h"
#include "kilnd/api/api.h"
#include "kilnd/net/host_network.h"
#include "kilnd/orchestrator/api_keys.h"
#include "kilnd/orchestrator/manager.h"
#include "kilnd/orchestrator/store.h"
#include "kilnd/proxy/proxy.h"
#include "kilnd/runtime/ns/ns_runtime.h"
#include "kilnd/runtime/vm/vm_runtime.h"
#include "kilnd/template/template_store.h"

namespace {

namespace fs = std::filesystem;
using namespace kiln;
using namespace kiln::kilnd;

struct Flags {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 3000;
  fs::path data_dir = "/var/lib/kiln";
  fs::path template_dir;  // default <data-dir>/templates
  fs::path envd;          // default: kiln-envd beside this binary
  fs::path interp;        // default: kiln-interp beside this binary
  // Built at start (and by --build-only); pooled when built.
  std::vector<std::string> templates = {"base", "code-interpreter-v1"};
  int interp_pool_size = 2;
  std::string name = "kiln";
  std::string subnet = "10.201.0.0/16";
  std::string domain;
  int pool_size = 2;
  uint64_t memory_mb = 512;
  uint32_t cpu_millis = 1000;
  uint64_t disk_mb = 1024;
  uint32_t pids = 1024;
  int64_t default_timeout_s = 300;
  bool build_templates = true;
  bool build_only = false;
  std::vector<std::string> blocked;
  std::vector<std::string> dns;
  // Runtimes: the default one, whether vm is available besides it, per-template defaults.
  std::string runtime = "ns";
  bool vm = false;
  std::map<std::string, std::string> template_runtimes;
  fs::path vminit;  // default: kiln-vminit beside this binary
  std::string vm_accel = "auto";
  std::string vm_guest_aslr = "auto";
  uint32_t vm_memory_mb = 512;
  std::string vm_console = "null";
  log::Level level = log::Level::kInfo;
  bool json_log = false;
};

void Usage() {
  std::fprintf(stderr,
               "usage: kilnd [--listen HOST:PORT] [--data-dir DIR] [--template-dir DIR]\n"
               "             [--envd PATH] [--interp PATH] [--name NAME] [--subnet CIDR] [--domain DOMAIN]\n"
               "             [--templates LIST] [--pool-size N] [--interp-pool-size N] [--memory-mb N] [--cpus N] [--disk-mb N] [--pids N]\n"
               "             [--default-timeout SECONDS] [--block CIDR]... [--dns IP[:PORT]]... [--no-build] [--build-only]\n"
               "             [--runtime ns|vm] [--vm] [--template-runtime TEMPLATE=RUNTIME]...\n"
               "             [--vm-accel auto|kvm|tcg] [--vm-guest-aslr auto|on|off] [--vm-memory-mb N]\n"
               "             [--vm-console DIR] [--vminit PATH]\n"
               "             [--log-level LEVEL] [--json-log]\n"
               "\n"
               "  --listen         control API and sandbox proxy (default 127.0.0.1:3000; port 0 = any)\n"
               "  --data-dir       state: kiln.db, snapshots (default /var/lib/kiln)\n"
               "  --template-dir   template store (default <data-dir>/templates)\n"
               "  --name           instance name for cgroups, nftables and veths (default kiln)\n"
               "  --subnet         sandbox addresses, a /30 each (default 10.201.0.0/16)\n"
               "  --templates      templates built at start, comma-separated (default\n"
               "                   base,code-interpreter-v1; the first build takes minutes)\n"
               "  --pool-size      warm sandboxes kept for base (default 2)\n"
               "  --interp-pool-size  warm code-interpreter-v1 sandboxes, kernels started (default 2)\n"
               "  --interp         kiln-interp binary (default: beside kilnd)\n"
               "  --dns            resolver (IP[:PORT]) for the sandboxes' DNS relay; default: the\n"
               "                   host's /etc/resolv.conf nameservers\n"
               "  --block          a destination sandboxes may not reach, in addition to the host, its\n"
               "                   directly connected networks, private and link-local ranges\n"
               "  --no-build       do not build missing templates (use what is built)\n"
               "  --build-only     build the templates if needed, then exit\n"
               "  --runtime        default runtime of every template: ns (namespaces, default) or vm\n"
               "                   (a QEMU microVM per sandbox)\n"
               "  --vm             also offer the vm runtime (a sandbox created with metadata\n"
               "                   kiln.runtime=vm uses it)\n"
               "  --template-runtime  a template's default runtime, e.g. base=vm (repeatable)\n"
               "  --vm-accel       vm accelerator (default auto: KVM where it can run standard guests,\n"
               "                   else TCG, software emulation: a development mode)\n"
               "  --vm-guest-aslr  address space randomization in vm guests (default auto: off under\n"
               "                   TCG, whose code cache it defeats; on under KVM)\n"
               "  --vm-memory-mb   guest RAM of vm sandboxes (default 512)\n"
               "  --vm-console     directory for vm sandboxes' console logs (debugging; default none)\n");
}

bool ParseUint(const char* s, uint64_t& out) {
  if (!s || !*s) return false;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (*end != '\0') return false;
  out = v;
  return true;
}

bool ParseFlags(int argc, char** argv, Flags& f) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    uint64_t n = 0;
    if (a == "--listen") {
      const char* v = value();
      if (!v) return false;
      std::string s = v;
      size_t colon = s.rfind(':');
      if (colon == std::string::npos || !ParseUint(s.c_str() + colon + 1, n) || n > 65535) {
        return false;
      }
      f.listen_host = s.substr(0, colon);
      f.listen_port = static_cast<uint16_t>(n);
    } else if (a == "--data-dir") {
      const char* v = value();
      if (!v) return false;
      f.data_dir = v;
    } else if (a == "--template-dir") {
      const char* v = value();
      if (!v) return false;
      f.template_dir = v;
    } else if (a == "--envd") {
      const char* v = value();
      if (!v) return false;
      f.envd = v;
    } else if (a == "--interp") {
      const char* v = value();
      if (!v) return false;
      f.interp = v;
    } else if (a == "--templates") {
      const char* v = value();
      if (!v) return false;
      f.templates.clear();
      std::string list = v;
      for (size_t start = 0; start <= list.size();) {
        size_t comma = list.find(',', start);
        if (comma == std::string::npos) comma = list.size();
        if (comma > start) f.templates.push_back(list.substr(start, comma - start));
        start = comma + 1;
      }
    } else if (a == "--interp-pool-size") {
      if (!ParseUint(value(), n) || n > 1000) return false;
      f.interp_pool_size = static_cast<int>(n);
    } else if (a == "--name") {
      const char* v = value();
      if (!v) return false;
      f.name = v;
    } else if (a == "--subnet") {
      const char* v = value();
      if (!v) return false;
      f.subnet = v;
    } else if (a == "--domain") {
      const char* v = value();
      if (!v) return false;
      f.domain = v;
    } else if (a == "--pool-size") {
      if (!ParseUint(value(), n) || n > 1000) return false;
      f.pool_size = static_cast<int>(n);
    } else if (a == "--memory-mb") {
      if (!ParseUint(value(), n) || n < 16) return false;
      f.memory_mb = n;
    } else if (a == "--cpus") {
      if (!ParseUint(value(), n) || n < 1 || n > 256) return false;
      f.cpu_millis = static_cast<uint32_t>(n * 1000);
    } else if (a == "--disk-mb") {
      if (!ParseUint(value(), n) || n < 1) return false;
      f.disk_mb = n;
    } else if (a == "--pids") {
      if (!ParseUint(value(), n) || n < 8) return false;
      f.pids = static_cast<uint32_t>(n);
    } else if (a == "--default-timeout") {
      if (!ParseUint(value(), n)) return false;
      f.default_timeout_s = static_cast<int64_t>(n);
    } else if (a == "--no-build") {
      f.build_templates = false;
    } else if (a == "--dns") {
      const char* v = value();
      if (!v) return false;
      f.dns.push_back(v);
    } else if (a == "--block") {
      const char* v = value();
      if (!v) return false;
      f.blocked.push_back(v);
    } else if (a == "--build-only") {
      f.build_only = true;
    } else if (a == "--log-level") {
      const char* v = value();
      auto level = v ? log::ParseLevel(v) : std::nullopt;
      if (!level) return false;
      f.level = *level;
    } else if (a == "--json-log") {
      f.json_log = true;
    } else if (a == "--runtime") {
      const char* v = value();
      if (!v || (std::string_view(v) != "ns" && std::string_view(v) != "vm")) return false;
      f.runtime = v;
    } else if (a == "--vm") {
      f.vm = true;
    } else if (a == "--template-runtime") {
      const char* v = value();
      if (!v) return false;
      std::string s = v;
      size_t eq = s.find('=');
      if (eq == std::string::npos || eq == 0) return false;
      std::string rt = s.substr(eq + 1);
      if (rt != "ns" && rt != "vm") return false;
      f.template_runtimes[s.substr(0, eq)] = rt;
    } else if (a == "--vminit") {
      const char* v = value();
      if (!v) return false;
      f.vminit = v;
    } else if (a == "--vm-accel") {
      const char* v = value();
      if (!v) return false;
      f.vm_accel = v;
      if (f.vm_accel != "auto" && f.vm_accel != "kvm" && f.vm_accel != "tcg") return false;
    } else if (a == "--vm-guest-aslr") {
      const char* v = value();
      if (!v) return false;
      f.vm_guest_aslr = v;
      if (f.vm_guest_aslr != "auto" && f.vm_guest_aslr != "on" && f.vm_guest_aslr != "off") {
        return false;
      }
    } else if (a == "--vm-memory-mb") {
      if (!ParseUint(value(), n) || n < 64 || n > 65536) return false;
      f.vm_memory_mb = static_cast<uint32_t>(n);
    } else if (a == "--vm-console") {
      const char* v = value();
      if (!v) return false;
      f.vm_console = v;
    } else {
      return false;
    }
  }
  return true;
}

// Destinations of the host's directly connected IPv4 routes (its LANs), from /proc/net/route,
// except loopback and the sandboxes' own veths.
std::vector<std::string> HostConnectedNetworks(const std::string& veth_prefix) {
  std::vector<std::string> out;
  std::ifstream in("/proc/net/route");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string iface, dest, gateway, flags, refcnt, use, metric, mask;
    if (!(f >> iface >> dest >> gateway >> flags >> refcnt >> use >> metric >> mask)) continue;
    if (iface == "lo" || iface.rfind(veth_prefix, 0) == 0 || gateway != "00000000") continue;
    uint32_t d = static_cast<uint32_t>(std::strtoul(dest.c_str(), nullptr, 16));
    uint32_t m = static_cast<uint32_t>(std::strtoul(mask.c_str(), nullptr, 16));
    if (m == 0) continue;  // a default route is not a LAN
    // /proc/net/route prints the addresses in host byte order of a little-endian load.
    char addr[INET_ADDRSTRLEN];
    in_addr ia{d};
    inet_ntop(AF_INET, &ia, addr, sizeof addr);
    int prefix = __builtin_popcount(m);
    out.push_back(std::string(addr) + "/" + std::to_string(prefix));
  }
  return out;
}

fs::path SelfDir() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path(".") : self.parent_path();
}

Status BuildTemplates(const tmpl::TemplateStore& templates, const std::vector<std::string>& names,
                      const fs::path& envd) {
  for (const std::string& name : names) {
    auto built = templates.EnsureBuilt(name, envd, [&name](const tmpl::BuildProgress& p) {
      KILN_LOG(Info, "building template", {"template", name}, {"phase", p.phase},
               {"percent", p.percent}, {"detail", p.detail});
    });
    if (!built) return Unexpected(std::move(built).error());
  }
  return {};
}

int Fatal(std::string_view what, const Error& e) {
  KILN_LOG(Error, "kilnd cannot start", {"step", std::string(what)}, {"error", e.message()});
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, flags)) {
    Usage();
    return 2;
  }
  log::SetMinLevel(flags.level);
  log::SetJson(flags.json_log);
  signal(SIGPIPE, SIG_IGN);
  if (geteuid() != 0) {
    std::fprintf(stderr, "kilnd: must run as root (namespaces, cgroups, networking)\n");
    return 1;
  }
  if (flags.template_dir.empty()) flags.template_dir = flags.data_dir / "templates";
  if (flags.envd.empty()) flags.envd = SelfDir() / "kiln-envd";
  std::error_code ec;
  if (!fs::exists(flags.envd, ec)) {
    return Fatal("kiln-envd", Error(Errc::kNotFound, flags.envd.string() + " not found (--envd)"));
  }
  tmpl::TemplateStore templates(flags.template_dir);
  if (flags.interp.empty()) flags.interp = SelfDir() / "kiln-interp";
  if (!fs::exists(flags.interp, ec)) {
    KILN_LOG(Warn, "no kiln-interp: code-interpreter sandboxes cannot start", {"path", flags.interp.string()});
    flags.interp.clear();
  }
  if (flags.build_only) {
    auto built = BuildTemplates(templates, flags.templates, flags.envd);
    return built ? 0 : Fatal("templates", built.error());
  }

  fs::create_directories(flags.data_dir, ec);
  if (ec) return Fatal("data dir", Error(Errc::kUnavailable, flags.data_dir.string() + ": " + ec.message()));
  chmod(flags.data_dir.c_str(), 0700);

  auto store = Store::Open(flags.data_dir / "kiln.db");
  if (!store) return Fatal("state store", store.error());
  if (flags.build_templates) {
    auto built = BuildTemplates(templates, flags.templates, flags.envd);
    if (!built) return Fatal("templates", built.error());
  }
  std::vector<TemplateRow> template_rows;
  for (const auto& t : templates.List()) {
    template_rows.push_back(TemplateRow{t.name, t.rootfs.string(), t.recipe, t.created_at});
  }
  if (auto st = (*store)->SyncTemplates(template_rows); !st) return Fatal("templates", st.error());
  ApiKeys keys(**store);
  if (auto st = keys.Load(); !st) return Fatal("api keys", st.error());
  if (keys.empty()) {
    auto key = keys.Create("initial");
    if (!key) return Fatal("api key", key.error());
    // Shown once: only its hash is kept.
    std::printf("kilnd: created the first API key (shown only now, keep it):\n  E2B_API_KEY=%s\n",
                key->c_str());
    std::fflush(stdout);
  }

  if (auto st = net::HostNetwork::RemoveLeftovers(flags.name); !st) {
    return Fatal("network cleanup", st.error());
  }
  net::NetworkConfig net_config;
  net_config.name = flags.name;
  net_config.subnet = flags.subnet;
  // The host's own networks (its LAN, whatever range it uses) are never a sandbox's business.
  net_config.blocked_extra = HostConnectedNetworks(flags.name + "-");
  for (const auto& b : flags.blocked) net_config.blocked_extra.push_back(b);
  auto network = net::HostNetwork::Setup(net_config);
  for (const auto& b : net_config.blocked_extra) KILN_LOG(Info, "sandboxes may not reach", {"network", b});
  if (!network) return Fatal("network", network.error());

  ns::NsRuntimeOptions rt_options;
  rt_options.name = flags.name;
  rt_options.network = network->get();
  auto runtime = ns::NsRuntime::Create(rt_options);
  if (!runtime) return Fatal("runtime", runtime.error());
  if (auto st = (*runtime)->CleanupStale(); !st) return Fatal("runtime cleanup", st.error());

  bool want_vm = flags.vm || flags.runtime == "vm";
  for (const auto& [t, rt] : flags.template_runtimes) want_vm = want_vm || rt == "vm";
  std::unique_ptr<vm::VmRuntime> vm_runtime;
  if (want_vm) {
    vm::VmRuntimeOptions vo;
    vo.name = flags.name;
    vo.network = network->get();
    vo.vminit = flags.vminit.empty() ? SelfDir() / "kiln-vminit" : flags.vminit;
    vo.accel = flags.vm_accel;
    vo.guest_aslr = flags.vm_guest_aslr;
    vo.memory_mib = flags.vm_memory_mb;
    vo.disk_extra_bytes = flags.disk_mb << 20;
    vo.console = flags.vm_console;
    auto created = vm::VmRuntime::Create(vo);
    if (!created) return Fatal("vm runtime", created.error());
    vm_runtime = std::move(*created);
    if (auto st = vm_runtime->CleanupStale(); !st) return Fatal("vm runtime cleanup", st.error());
    std::printf("kilnd: vm runtime: %s%s%s\n", vm_runtime->accel().c_str(),
                vm_runtime->accel() == "tcg" ? " (software emulation: development mode, slow)" : "",
                vm_runtime->guest_aslr() ? "" : "; guest ASLR off");
  }

  TemplateResolver resolve = [&templates, &flags](std::string_view name) -> Result<TemplateSpec> {
    auto info = templates.Get(name);
    if (!info) {
      if (info.error().code() == Errc::kNotFound || info.error().code() == Errc::kInvalidArgument) {
        return Fail(Errc::kNotFound, "template \"" + std::string(name) + "\" not found");
      }
      return Unexpected(std::move(info).error());
    }
    TemplateSpec spec;
    spec.name = info->name;
    spec.rootfs = info->rootfs;
    spec.default_user = info->default_user;
    spec.workdir = info->workdir;
    spec.env = info->env;
    spec.start_cmd = info->start_cmd;
    spec.ready_port = info->ready_port;
    spec.ready_path = info->ready_path;
    if (auto it = flags.template_runtimes.find(spec.name); it != flags.template_runtimes.end()) {
      spec.runtime = it->second;
    } else {
      spec.runtime = flags.runtime;
    }
    return spec;
  };

  // The vm runtime's template snapshots (a boot of each template, its service started) are
  // made before kilnd says it is ready, so no sandbox create waits for one.
  if (vm_runtime) {
    for (const auto& t : templates.List()) {
      auto spec = resolve(t.name);
      if (!spec || spec->runtime != "vm") continue;
      if (!spec->start_cmd.empty() && flags.interp.empty()) continue;
      InstanceSpec is;
      is.rootfs = spec->rootfs;
      is.envd_binary = flags.envd;
      is.interp_binary = flags.interp;
      if (!spec->start_cmd.empty()) {
        is.service = InstanceSpec::Service{spec->start_cmd, spec->ready_port, spec->ready_path};
      }
      KILN_LOG(Info, "preparing the vm snapshot of a template", {"template", t.name});
      if (auto st = vm_runtime->Prepare(is); !st) return Fatal("vm snapshot of " + t.name, st.error());
    }
    // Snapshots of older agent binaries or templates take GBs each.
    if (auto pruned = vm_runtime->PruneSnapshots(flags.data_dir / "snapshots"); !pruned) {
      KILN_LOG(Warn, "pruning vm template snapshots", {"error", pruned.error().message()});
    } else if (!pruned->removed.empty()) {
      KILN_LOG(Info, "removed unused vm template snapshots", {"count", pruned->removed.size()},
               {"mib", pruned->bytes >> 20});
    }
  }

  std::vector<boost::asio::ip::udp::endpoint> resolvers;
  if (flags.dns.empty()) {
    std::ifstream in("/etc/resolv.conf");
    std::stringstream text;
    text << in.rdbuf();
    resolvers = ParseNameservers(text.str());
  }
  for (const auto& d : flags.dns) {
    auto ep = ParseDnsServer(d);
    if (!ep) return Fatal("--dns", ep.error());
    resolvers.push_back(*ep);
  }
  {
    // Everything that runs on the I/O thread; destroyed before the state dir is released, so
    // sandboxes still being created when the stop came are gone by then.
    boost::asio::io_context io(1);
    DnsForwarder dns(io, resolvers);
    for (const auto& r : resolvers) {
      KILN_LOG(Info, "sandbox DNS relayed to", {"resolver", r.address().to_string() + ":" + std::to_string(r.port())});
    }

    ManagerOptions m;
    m.dns = &dns;
    m.data_dir = flags.data_dir;
    m.envd_binary = flags.envd;
    m.interp_binary = flags.interp;
    m.limits.memory_bytes = flags.memory_mb << 20;
    m.limits.cpu_millis = flags.cpu_millis;
    m.limits.disk_bytes = flags.disk_mb << 20;
    m.limits.pids = flags.pids;
    // Pools for the built templates (a code interpreter needs kiln-interp).
    m.pool_sizes.clear();
    for (const auto& t : templates.List()) {
      if (t.name == "base") m.pool_sizes[t.name] = flags.pool_size;
      if (t.name == "code-interpreter-v1" && !flags.interp.empty()) {
        m.pool_sizes[t.name] = flags.interp_pool_size;
      }
    }
    m.default_timeout_s = flags.default_timeout_s;
    if (vm_runtime) m.runtimes["vm"] = vm_runtime.get();

    SandboxManager manager(io, **store, **runtime, resolve, m);
    if (auto st = manager.Start(); !st) return Fatal("orchestrator", st.error());
    Api api(manager, keys, ApiOptions{flags.domain});
    Proxy proxy(manager);

    http::Server server(
        io,
        [&api, &proxy](http::Exchange& ex) -> http::Task<void> {
          if (auto target = RouteRequest(ex.request())) {
            return proxy.Handle(ex, std::move(*target));
          }
          return api.Handle(ex);
        },
        http::ServerOptions{});
    if (auto st = server.Listen(flags.listen_host, flags.listen_port); !st) {
      return Fatal("listen", st.error());
    }
    server.Start();

    boost::asio::signal_set stop(io, SIGINT, SIGTERM);
    stop.async_wait([&](const boost::system::error_code& e, int) {
      if (e) return;
      KILN_LOG(Info, "kilnd stopping");
      boost::asio::co_spawn(
          io,
          [&]() -> http::Task<void> {
            co_await manager.Shutdown();
            io.stop();
          },
          boost::asio::detached);
    });
    // A line for people and for scripts that wait for readiness.
    std::printf("kilnd: ready on http://%s:%u (data %s)\n", flags.listen_host.c_str(),
                server.port(), flags.data_dir.c_str());
    std::fflush(stdout);
    KILN_LOG(Info, "kilnd listening", {"addr", flags.listen_host}, {"port", server.port()});
    io.run();
  }
  (*runtime)->RemoveStateDirIfEmpty();
  if (vm_runtime) vm_runtime->RemoveStateDirIfEmpty();
  return 0;
}
