// The vm runtime (QEMU microVM per sandbox, TCG on this machine) against a cold boot of the
// same guest, in one run; plus the memory of idle vm sandboxes and how many run at once.
//
// bench/vm_bench.sh drives it in two phases, each against its own throwaway kilnd --runtime vm:
//
//   vm_bench --phase pool --url URL --api-key KEY [--count 50] --out FILE
//     kilnd with a warm pool: before each create, waits until GET /kiln/status shows the base
//     pool full again (as an operator sizes a pool for the load), then measures create ->
//     first output of `/bin/echo ready` (POST /v2/sandboxes, then process.Process/Start through
//     the proxy, like kilnd_create_bench); then the same with the command the SDK's
//     commands.run("echo ready") sends (`bash -l -c 'echo ready'`: the template's login
//     profile runs too). Writes the samples to FILE.
//
//   vm_bench --phase main --url URL --api-key KEY --name NAME --envd PATH --pool-results FILE
//            [--count 50] [--boots 8] [--idle 20] [--max 60] [--cache /var/cache/kiln/vm]
//            [--snapshot DIR]
//     kilnd without a pool (the snapshot restore is on the create path): the same measurement;
//     then the baseline, a COLD BOOT of the same guest (QEMU, kernel, initramfs, kernel
//     command line, template image under a fresh qcow2 overlay, agent disk; anonymous RAM;
//     a tap in a network namespace of our own), timed from spawning QEMU to the first
//     `echo ready` output from the guest's kiln-envd; then N idle sandboxes (private memory
//     and PSS of their QEMUs, the host's MemAvailable drop), then more idle sandboxes up to
//     --max (stopping early when a create fails or MemAvailable falls under 2 GiB), each checked
//     at the end, with the host CPU they burn. Prints the whole report (both phases) and one
//     JSON line. A missed target is printed as MISSED; it does not change the exit status.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "kilnd/net/guest_link.h"
#include "kilnd/net/netns.h"
#include "kilnd/runtime/vm/disk_image.h"
#include "kilnd/runtime/vm/guest_agent.h"
#include "kilnd/runtime/vm/microvm.h"
#include "kilnd/runtime/vm/qemu_process.h"
#include "kilnd/runtime/vm/template_snapshot.h"
#include "kilnd_client.h"

namespace {

namespace fs = std::filesystem;
namespace bench = kiln::bench;
namespace vm = kiln::kilnd::vm;
namespace net = kiln::kilnd::net;
using bench::Clock;
using bench::MemAvailable;
using bench::Percentile;
using json = nlohmann::json;

constexpr int kReadTimeoutMs = 60000;  // no single read from kilnd or a guest waits longer
constexpr double kMiB = 1024.0 * 1024.0;
constexpr uint64_t kMemFloor = uint64_t{2} << 30;  // density stops below this MemAvailable

struct Options {
  std::string phase;
  bench::KilndEndpoint kilnd;
  std::string name;  // the kilnd's --name (its vm cgroups are kiln-<name>-vm/<id>)
  fs::path envd;     // the kiln-envd the kilnd uses (finds its template snapshot)
  fs::path out;
  fs::path pool_results;
  fs::path cache = "/var/cache/kiln/vm";
  fs::path snapshot;
  int count = 50;
  int boots = 8;
  int idle = 20;
  int max = 60;
  int sandbox_timeout_s = 1800;
};

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

void Sleep(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string LoadAvg() {
  std::string s = ReadFile("/proc/loadavg");
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// ---------------------------------------------------------------------------------------
// kilnd side

std::optional<json> Status(const bench::KilndEndpoint& ep) {
  auto r = bench::Exchange(
      ep, bench::Request("GET", "/kiln/status", {"X-API-Key: " + ep.api_key}, ""), kReadTimeoutMs);
  if (!r || r->status != 200) return std::nullopt;
  json j = json::parse(r->body, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  return j;
}

// Waits until the base pool is full (ready >= target); false after `limit`.
bool WaitPoolFull(const bench::KilndEndpoint& ep, std::chrono::seconds limit) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (auto s = Status(ep)) {
      const json& p = (*s)["pool"];
      if (p.is_object() && p.contains("base")) {
        int ready = p["base"].value("ready", 0), target = p["base"].value("target", 0);
        if (target > 0 && ready >= target) return true;
      }
    }
    Sleep(0.005);
  }
  return false;
}

struct Series {
  std::vector<double> total;   // create -> first output
  std::vector<double> create;  // the create call alone
  std::vector<double> second;  // then a second `echo ready` in the same sandbox (not in total)
  int expected = 0;
};

json SeriesJson(const Series& s) {
  json j = json::object();
  j["total"] = s.total;
  j["create"] = s.create;
  j["second"] = s.second;
  j["expected"] = s.expected;
  return j;
}

Series SeriesFrom(const json& j) {
  Series s;
  if (!j.is_object()) return s;
  s.total = j.value("total", std::vector<double>{});
  s.create = j.value("create", std::vector<double>{});
  s.second = j.value("second", std::vector<double>{});
  s.expected = j.value("expected", 0);
  return s;
}

// `count` sandboxes one after another, each killed after its output (outside the timed part,
// so idle guests do not pile up on the 2 cores); with `wait_pool`, the pool is full before each.
// `form`: how the command is started (a process of its own, or the SDK's login bash).
Series MeasureCreates(const Options& o, int count, bool wait_pool,
                      bench::EchoForm form = bench::EchoForm::kExec) {
  Series s;
  s.expected = count;
  for (int i = 0; i < count; ++i) {
    if (wait_pool && !WaitPoolFull(o.kilnd, std::chrono::seconds(120))) {
      std::fprintf(stderr, "the warm pool did not refill within 120 s\n");
    }
    auto r = bench::CreateAndRunEcho(o.kilnd, "base", 120, kReadTimeoutMs, form);
    if (!r) continue;
    s.total.push_back(r->ms);
    s.create.push_back(r->create_ms);
    // Where the first command's time goes: the same command again, the guest's code now
    // translated (TCG starts a restored guest with an empty translation cache).
    auto t0 = Clock::now();
    if (bench::RunEchoReady(o.kilnd, r->id, r->token, kReadTimeoutMs, form)) {
      s.second.push_back(Ms(Clock::now() - t0));
    }
    bench::KillSandbox(o.kilnd, r->id);
  }
  return s;
}

int PoolPhase(const Options& o) {
  if (!WaitPoolFull(o.kilnd, std::chrono::seconds(900))) {
    std::fprintf(stderr, "vm_bench: the warm pool never filled\n");
    return 1;
  }
  // Warm-up: first connections, page cache of the template's files.
  (void)MeasureCreates(o, 2, true);
  int target = 0;
  if (auto s = Status(o.kilnd)) target = (*s)["pool"]["base"].value("target", 0);
  Series s = MeasureCreates(o, o.count, true);
  // The same as the SDK's commands.run("echo ready") sends it: a login bash, whose profile
  // forks and execs `id` (the template's cost, not kiln's), with echo a builtin.
  (void)MeasureCreates(o, 2, true, bench::EchoForm::kSdk);
  Series sdk = MeasureCreates(o, o.count, true, bench::EchoForm::kSdk);
  json out = SeriesJson(s);
  out["sdk"] = SeriesJson(sdk);
  out["pool_size"] = target;
  out["loadavg"] = LoadAvg();  // at the end of the phase
  std::ofstream f(o.out);
  f << out.dump() << "\n";
  return f ? 0 : 1;
}

// ---------------------------------------------------------------------------------------
// Memory and CPU of QEMU processes

std::vector<pid_t> CgroupPids(const Options& o, const std::string& id) {
  std::vector<pid_t> pids;
  std::ifstream in("/sys/fs/cgroup/unified/kiln-" + o.name + "-vm/" + id + "/cgroup.procs");
  pid_t p = 0;
  while (in >> p) pids.push_back(p);
  return pids;
}

struct ProcMem {
  double private_mib = 0;  // Private_Clean + Private_Dirty
  double dirty_mib = 0;    // Private_Dirty alone (the guest's copy-on-write pages, QEMU's heap)
  double pss_mib = 0;
  double rss_mib = 0;
};

std::optional<ProcMem> SmapsRollup(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  if (!in) return std::nullopt;
  ProcMem m;
  std::string line;
  bool any = false;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string key;
    double kb = 0;
    if (!(ls >> key >> kb)) continue;
    if (key == "Private_Clean:" || key == "Private_Dirty:") m.private_mib += kb / 1024, any = true;
    if (key == "Private_Dirty:") m.dirty_mib = kb / 1024;
    if (key == "Pss:") m.pss_mib = kb / 1024;
    if (key == "Rss:") m.rss_mib = kb / 1024;
  }
  if (!any) return std::nullopt;
  return m;
}

// Private_Clean + Private_Dirty of the mappings of `pid` whose file name ends in `suffix`
// (the guest RAM: the template's RAM file, mapped copy-on-write), in MiB.
double PrivateOfMapping(pid_t pid, const std::string& suffix) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  std::string line;
  bool inside = false;
  double kb_sum = 0;
  while (std::getline(in, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
        line.find(':') > line.find('-')) {
      // A mapping's header: "start-end perms offset dev inode [path]".
      inside = line.size() >= suffix.size() &&
               line.compare(line.size() - suffix.size(), suffix.size(), suffix) == 0;
      continue;
    }
    if (!inside) continue;
    std::istringstream ls(line);
    std::string key;
    double kb = 0;
    if ((ls >> key >> kb) && (key == "Private_Clean:" || key == "Private_Dirty:")) kb_sum += kb;
  }
  return kb_sum / 1024;
}

// utime + stime of a process in clock ticks.
std::optional<uint64_t> ProcCpuTicks(pid_t pid) {
  std::string s = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t close_paren = s.rfind(')');
  if (close_paren == std::string::npos) return std::nullopt;
  std::istringstream in(s.substr(close_paren + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  // Fields after the command: state(3) ... utime(14) stime(15).
  for (int i = 3; i <= 15 && (in >> field); ++i) {
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  return utime + stime;
}

struct CpuTimes {
  uint64_t busy = 0, total = 0;
};

CpuTimes HostCpu() {
  std::istringstream in(ReadFile("/proc/stat"));
  std::string cpu;
  in >> cpu;
  CpuTimes t;
  uint64_t v[10] = {};
  for (int i = 0; i < 10 && (in >> v[i]); ++i) {
  }
  // user nice system idle iowait irq softirq steal guest guest_nice (guest is in user).
  for (int i = 0; i < 8; ++i) t.total += v[i];
  t.busy = t.total - v[3] - v[4];
  return t;
}

// Host CPU busy over `seconds` (fraction of all cores, 0..1) and the CPU the processes in
// `pids` used meanwhile (in cores: 1.0 = one core fully).
struct CpuSample {
  double host_busy = 0;
  double pids_cores = 0;
};

CpuSample SampleCpu(const std::vector<pid_t>& pids, double seconds) {
  std::vector<std::optional<uint64_t>> before;
  for (pid_t p : pids) before.push_back(ProcCpuTicks(p));
  CpuTimes h0 = HostCpu();
  auto t0 = Clock::now();
  Sleep(seconds);
  CpuTimes h1 = HostCpu();
  double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  CpuSample s;
  if (h1.total > h0.total) {
    s.host_busy = static_cast<double>(h1.busy - h0.busy) / static_cast<double>(h1.total - h0.total);
  }
  uint64_t ticks = 0;
  for (size_t i = 0; i < pids.size(); ++i) {
    auto after = ProcCpuTicks(pids[i]);
    if (before[i] && after && *after >= *before[i]) ticks += *after - *before[i];
  }
  s.pids_cores = static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK)) / wall;
  return s;
}

// ---------------------------------------------------------------------------------------
// Cold boot baseline

std::string FileStamp(const fs::path& path) {  // as template_snapshot.cc keys the agent
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "-";
  return std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_ino);
}

struct ColdGuest {
  fs::path snapshot, kernel, initrd, root_image, agent_image;
  vm::MicrovmConfig machine;
};

// The guest every sandbox of the kilnd's base template is restored from, set up to boot
// from scratch: the snapshot dir whose key names this kiln-envd (or --snapshot).
kiln::Result<ColdGuest> FindGuest(const Options& o) {
  using kiln::Errc;
  using kiln::Fail;
  ColdGuest g;
  json key;
  std::error_code ec;
  if (!o.snapshot.empty()) {
    g.snapshot = o.snapshot;
    key = json::parse(ReadFile(o.snapshot / "snapshot.json"), nullptr, false);
  } else {
    std::string stamp = FileStamp(o.envd);
    for (const auto& e : fs::directory_iterator(o.cache / "snapshots", ec)) {
      if (e.path().filename().string().rfind("base-", 0) != 0) continue;
      json k = json::parse(ReadFile(e.path() / "snapshot.json"), nullptr, false);
      if (k.is_object() && k.value("envd", "") == stamp) {
        g.snapshot = e.path();
        key = k;
      }
    }
  }
  if (g.snapshot.empty() || !key.is_object()) {
    return Fail(Errc::kNotFound, "no base template snapshot for " + o.envd.string() + " in " +
                                     (o.cache / "snapshots").string());
  }
  g.root_image = g.snapshot / "root.ext4";
  g.agent_image = g.snapshot / "agent.ext4";
  std::string kernel = key.value("kernel", "");
  std::string release = kernel.substr(kernel.find(' ') + 1);
  for (const auto& e : fs::directory_iterator(o.cache / "kernels", ec)) {
    json k = json::parse(ReadFile(e.path() / "kernel.json"), nullptr, false);
    if (k.is_object() && k.value("release", "") == release) g.kernel = e.path() / "vmlinux";
  }
  if (g.kernel.empty()) return Fail(Errc::kNotFound, "no cached guest kernel " + release);
  g.initrd = o.cache / ("initramfs-" + key.value("initrd", "") + ".cpio");
  if (!fs::exists(g.initrd, ec)) return Fail(Errc::kNotFound, "no " + g.initrd.string());

  vm::MicrovmConfig& m = g.machine;
  m.accel = key.value("accel", "tcg");
  m.cpu = key.value("cpu", "");
  m.cpus = key.value("cpus", 1u);
  m.memory_mib = key.value("memory_mib", 512u);
  m.kernel = g.kernel;
  m.initrd = g.initrd;
  // The guest's kernel arguments (kiln's, e.g. norandmaps) and init as the snapshot was booted
  // with them: its command line is the fixed prefix, those arguments, " -- " and the init.
  vm::GuestCmdlineOptions cmd;
  std::string want = key.value("cmdline", "");
  std::string prefix = vm::GuestKernelCmdline(vm::GuestCmdlineOptions{}) + " ";
  size_t dashes = want.find(" -- ");
  if (dashes == std::string::npos || want.compare(0, prefix.size(), prefix) != 0) {
    return Fail(Errc::kInvalidArgument, "unexpected snapshot kernel command line " + want);
  }
  std::istringstream extra(want.substr(prefix.size(), dashes - prefix.size()));
  for (std::string arg; extra >> arg;) cmd.extra.push_back(arg);
  std::istringstream init(want.substr(dashes + 4));
  for (std::string arg; init >> arg;) cmd.init.push_back(arg);
  if (vm::GuestKernelCmdline(cmd) != want) {
    std::fprintf(stderr, "vm_bench: warning: the snapshot's kernel command line differs:\n  %s\n",
                 key.value("cmdline", "").c_str());
  }
  if (auto khz = vm::HostTscKhz()) cmd.tsc_khz = *khz;
  m.cmdline = vm::GuestKernelCmdline(cmd);
  m.serial = "null";
  return g;
}

kiln::Status WriteSysctl(int netns_fd, const std::string& path, const std::string& value) {
  return net::RunInNetns(netns_fd, [&]() -> kiln::Status {
    kiln::UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return kiln::FailErrno("open " + path);
    if (write(fd.get(), value.data(), value.size()) < 0) return kiln::FailErrno("write " + path);
    return {};
  });
}

// One connection attempt to the guest's agent from inside `netns_fd`; the connected
// (blocking) socket, or an invalid fd.
kiln::UniqueFd ConnectGuest(int netns_fd, int timeout_ms) {
  auto fd = net::SocketInNetns(netns_fd, AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (!fd) return {};
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(vm::kGuestAgentPort);
  inet_pton(AF_INET, vm::kGuestAddress, &a.sin_addr);
  if (connect(fd->get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (errno != EINPROGRESS) return {};
    pollfd p{fd->get(), POLLOUT, 0};
    if (poll(&p, 1, timeout_ms) != 1) return {};
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd->get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return {};
  }
  int flags = fcntl(fd->get(), F_GETFL);
  fcntl(fd->get(), F_SETFL, flags & ~O_NONBLOCK);
  timeval tv{5, 0};
  setsockopt(fd->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd->get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return std::move(*fd);
}

struct ColdBoot {
  double ms = 0;               // QEMU spawn -> first output of `echo ready`
  std::optional<ProcMem> mem;  // the booted guest's QEMU after settling (when asked)
};

// Boots the guest from scratch in `work` and runs `echo ready` in it.
kiln::Result<ColdBoot> BootOnce(const ColdGuest& g, const fs::path& work, double settle_s) {
  using kiln::Errc;
  using kiln::Fail;
  std::error_code ec;
  fs::create_directories(work, ec);
  if (ec) return Fail(Errc::kUnavailable, "create " + work.string() + ": " + ec.message());
  fs::path overlay = work / "disk.qcow2";
  KILN_TRY(vm::CreateOverlay(g.root_image, "raw", overlay));
  KILN_ASSIGN_OR_RETURN(net::NetNamespace netns, net::NetNamespace::Create());
  net::GuestLinkConfig link;
  link.masquerade = false;  // the guest needs no way out
  KILN_ASSIGN_OR_RETURN(kiln::UniqueFd tap, net::CreateGuestLink(netns.get(), link));
  // The guest answers ARP only once its eth0 is up: resolve every 10 ms instead of every
  // second, so polling does not add up to a second to the baseline.
  KILN_TRY(WriteSysctl(netns.get(), "/proc/sys/net/ipv4/neigh/" + link.ifname + "/retrans_time_ms",
                       "10"));

  vm::QemuLaunch launch;
  launch.config = g.machine;
  launch.config.disks = {{overlay, "qcow2", false}, {g.agent_image, "raw", true}};
  launch.run_dir = work;
  launch.netns_fd = netns.get();
  launch.tap_fd = tap.get();
  auto t0 = Clock::now();
  KILN_ASSIGN_OR_RETURN(auto qemu, vm::QemuProcess::Start(std::move(launch)));
  tap.reset();
  auto deadline = t0 + std::chrono::seconds(90);
  ColdBoot result;
  bool done = false;
  std::string last;
  while (!done && Clock::now() < deadline) {
    pollfd exited{qemu->pidfd(), POLLIN, 0};
    if (poll(&exited, 1, 0) == 1) {
      return Fail(Errc::kUnavailable, "qemu exited during the boot: " + qemu->Stderr());
    }
    kiln::UniqueFd fd = ConnectGuest(netns.get(), 200);
    if (fd) {
      std::string data;
      if (bench::EchoReadyOn(fd.get(), {}, data)) {
        result.ms = Ms(Clock::now() - t0);
        done = true;
        break;
      }
      last = data;
    }
    (void)poll(&exited, 1, 10);
  }
  if (!done) return Fail(Errc::kTimeout, "the cold-booted guest gave no output: " + last);
  if (settle_s > 0) {
    Sleep(settle_s);
    result.mem = SmapsRollup(qemu->pid());
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// Report

std::string Verdict(bool met) { return met ? "MET" : "MISSED"; }

void PrintSeries(const char* what, const Series& s, const std::vector<double>& cold) {
  double p50 = Percentile(s.total, 0.5), p99 = Percentile(s.total, 0.99);
  double c50 = Percentile(cold, 0.5), c99 = Percentile(cold, 0.99);
  std::printf("  %-22s p50 %8.1f ms  p99 %8.1f ms  (%zu/%d ok) | ratio to cold boot p50 %.3fx "
              "p99 %.3fx\n",
              what, p50, p99, s.total.size(), s.expected, c50 > 0 ? p50 / c50 : 0,
              c99 > 0 ? p99 / c99 : 0);
  std::printf("  %-22s   of which the create call p50 %8.1f ms  p99 %8.1f ms\n", "",
              Percentile(s.create, 0.5), Percentile(s.create, 0.99));
  std::printf("  %-22s   (then a second command in the same sandbox p50 %6.1f ms  p99 %6.1f ms)\n",
              "", Percentile(s.second, 0.5), Percentile(s.second, 0.99));
}

int MainPhase(const Options& o) {
  json report = json::object();
  std::string load_start = LoadAvg();
  report["loadavg_start"] = load_start;
  json pool_json = json::parse(ReadFile(o.pool_results), nullptr, false);
  Series pool = SeriesFrom(pool_json);
  Series pool_sdk = SeriesFrom(pool_json.is_object() ? pool_json.value("sdk", json()) : json());
  int pool_size = pool_json.is_object() ? pool_json.value("pool_size", 0) : 0;
  std::string pool_loadavg = pool_json.is_object() ? pool_json.value("loadavg", "") : "";

  auto guest = FindGuest(o);
  if (!guest) {
    std::fprintf(stderr, "vm_bench: %s\n", guest.error().message().c_str());
    return 1;
  }

  // Host CPU before any guest of ours runs (other work on the machine).
  CpuSample quiet = SampleCpu({}, 5);

  // (b) No pool: the restore is on the create path.
  (void)MeasureCreates(o, 2, false);  // warm-up
  Series nopool = MeasureCreates(o, o.count, false);

  // Baseline: cold boots of the same guest.
  char tmpl[] = "/tmp/vm-bench-boot.XXXXXX";
  if (!mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 1;
  }
  fs::path work = tmpl;
  std::vector<double> cold;
  std::optional<ProcMem> cold_mem;
  for (int i = 0; i < o.boots; ++i) {
    bool last = i == o.boots - 1;
    auto b = BootOnce(*guest, work / std::to_string(i), last ? 5.0 : 0.0);
    std::error_code ec;
    fs::remove_all(work / std::to_string(i), ec);
    if (!b) {
      std::fprintf(stderr, "cold boot %d: %s\n", i, b.error().message().c_str());
      continue;
    }
    cold.push_back(b->ms);
    if (b->mem) cold_mem = b->mem;
  }
  std::error_code ec;
  fs::remove_all(work, ec);

  // Idle sandboxes: memory, then how many at once.
  struct Idle {
    std::string id, token;
    std::vector<pid_t> pids;
  };
  std::vector<Idle> idle;
  uint64_t avail0 = MemAvailable();
  std::vector<double> idle_create;
  auto add_idle = [&]() -> bool {
    auto r = bench::CreateAndRunEcho(o.kilnd, "base", o.sandbox_timeout_s, kReadTimeoutMs);
    if (!r) return false;
    idle_create.push_back(r->ms);
    idle.push_back({r->id, r->token, CgroupPids(o, r->id)});
    return true;
  };
  for (int i = 0; i < o.idle; ++i) {
    if (!add_idle()) break;
  }
  Sleep(5);  // let them settle
  uint64_t avail1 = MemAvailable();
  size_t n_mem = idle.size();
  double priv_sum = 0, dirty_sum = 0, pss_sum = 0, ram_sum = 0;
  int mem_samples = 0;
  for (const auto& s : idle) {
    ProcMem m;
    bool any = false;
    for (pid_t p : s.pids) {
      if (auto pm = SmapsRollup(p)) {
        m.private_mib += pm->private_mib, m.dirty_mib += pm->dirty_mib;
        m.pss_mib += pm->pss_mib, m.rss_mib += pm->rss_mib;
        ram_sum += PrivateOfMapping(p, "/ram");
        any = true;
      }
    }
    if (any) {
      priv_sum += m.private_mib, dirty_sum += m.dirty_mib, pss_sum += m.pss_mib;
      ++mem_samples;
    }
  }
  double priv_avg = mem_samples ? priv_sum / mem_samples : 0;
  double pss_avg = mem_samples ? pss_sum / mem_samples : 0;
  double dirty_avg = mem_samples ? dirty_sum / mem_samples : 0;
  double ram_avg = mem_samples ? ram_sum / mem_samples : 0;
  double drop_per = n_mem ? static_cast<double>(avail0 > avail1 ? avail0 - avail1 : 0) / kMiB /
                                static_cast<double>(n_mem)
                          : 0;

  std::string stop_reason = "reached --max";
  while (static_cast<int>(idle.size()) < o.max) {
    if (MemAvailable() < kMemFloor) {
      stop_reason = "MemAvailable under 2 GiB";
      break;
    }
    if (!add_idle()) {
      stop_reason = "a create failed";
      break;
    }
  }
  Sleep(5);
  std::vector<pid_t> all_pids;
  for (const auto& s : idle) all_pids.insert(all_pids.end(), s.pids.begin(), s.pids.end());
  uint64_t avail_n = MemAvailable();
  CpuSample busy = SampleCpu(all_pids, 5);
  int answered = 0;
  for (const auto& s : idle) {
    if (bench::RunEchoReady(o.kilnd, s.id, s.token, kReadTimeoutMs)) ++answered;
  }
  for (const auto& s : idle) bench::KillSandbox(o.kilnd, s.id);
  // The host's other load once they are gone; with the sample before them, the baseline.
  CpuSample quiet_after = SampleCpu({}, 5);
  double other_load = (quiet.host_busy + quiet_after.host_busy) / 2;
  std::string load_end = LoadAvg();

  // ------------------------------------------------------------------ print
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  std::printf("vm runtime (accelerator %s, guest %u MiB): create -> first output of %s, "
              "%d sandboxes each mode\n",
              guest->machine.accel.c_str(), guest->machine.memory_mib,
              bench::EchoFormName(bench::EchoForm::kExec), o.count);
  std::printf("baseline: cold boot of the same guest (QEMU spawn -> first output), %zu/%d boots; "
              "p50 %.1f ms p99 %.1f ms\n",
              cold.size(), o.boots, Percentile(cold, 0.5), Percentile(cold, 0.99));
  PrintSeries(("warm pool (" + std::to_string(pool_size) + ")").c_str(), pool, cold);
  PrintSeries("no pool (restore)", nopool, cold);
  std::printf("  the same with %s:\n", bench::EchoFormName(bench::EchoForm::kSdk));
  PrintSeries(("warm pool (" + std::to_string(pool_size) + ")").c_str(), pool_sdk, cold);
  double pool_p50 = Percentile(pool.total, 0.5);
  double nopool_p50 = Percentile(nopool.total, 0.5);
  bool latency_ok = !pool.total.empty() && pool_p50 <= 100;
  std::printf("  target create -> first output <= 100 ms p50 under TCG: %s with the warm pool "
              "(%.1f ms), %s without a pool (%.1f ms)\n",
              Verdict(latency_ok).c_str(), pool_p50,
              Verdict(!nopool.total.empty() && nopool_p50 <= 100).c_str(), nopool_p50);

  std::printf("memory per idle VM (%zu idle vm sandboxes, settled 5 s):\n", n_mem);
  std::printf("  kiln (template RAM mapped copy-on-write): private %.1f MiB (dirty %.1f)  "
              "PSS %.1f MiB  MemAvailable drop %.1f MiB per VM\n",
              priv_avg, dirty_avg, pss_avg, drop_per);
  std::printf("    of the private memory: guest RAM pages copied from the template %.1f MiB, "
              "QEMU's own (heap, TCG code cache, libraries) %.1f MiB\n",
              ram_avg, priv_avg - ram_avg);
  if (cold_mem) {
    std::printf("  cold-booted guest (anonymous RAM):         private %.1f MiB (dirty %.1f)  "
                "PSS %.1f MiB | ratio private %.3fx\n",
                cold_mem->private_mib, cold_mem->dirty_mib, cold_mem->pss_mib,
                cold_mem->private_mib > 0 ? priv_avg / cold_mem->private_mib : 0);
  }
  bool mem_ok = mem_samples > 0 && priv_avg <= 40;
  std::printf("  target <= 40 MiB private per idle VM: %s (%.1f MiB)\n", Verdict(mem_ok).c_str(),
              priv_avg);

  size_t n = idle.size();
  double host_delta = busy.host_busy - other_load;  // fraction of all cores
  double per_vm_core = n ? busy.pids_cores / static_cast<double>(n) : 0;
  double drop_all = static_cast<double>(avail0 > avail_n ? avail0 - avail_n : 0) / kMiB;
  double drop_per_all = n ? drop_all / static_cast<double>(n) : 0;
  double by_mem = drop_per_all > 0
                      ? static_cast<double>(avail0 > kMemFloor ? avail0 - kMemFloor : 0) / kMiB /
                            drop_per_all
                      : 0;
  double by_cpu = per_vm_core > 0 ? static_cast<double>(cores) / per_vm_core : 0;
  std::printf("idle VMs at once: %zu (max %d; stopped: %s), %d/%zu answered a command at the end\n",
              n, o.max, n >= static_cast<size_t>(o.max) ? "reached --max" : stop_reason.c_str(),
              answered, n);
  std::printf("  MemAvailable drop %.0f MiB (%.1f MiB per VM)\n", drop_all, drop_per_all);
  std::printf("  host CPU busy %.1f%% of %ld cores with them, %.1f%% before and %.1f%% after "
              "them (other work on the host) -> %.1f%% of %ld cores for %zu idle VMs%s\n",
              busy.host_busy * 100, cores, quiet.host_busy * 100, quiet_after.host_busy * 100,
              host_delta * 100, cores, n,
              std::abs(quiet.host_busy - quiet_after.host_busy) > 0.1
                  ? " (the other load changed: trust the QEMU figure below)"
                  : "");
  std::printf("  their QEMUs used %.2f cores: %.2f%% of one core per idle VM\n", busy.pids_cores,
              per_vm_core * 100);
  std::printf("  projected on this host: ~%.0f idle VMs by memory (MemAvailable %.1f GiB at the "
              "start, 2 GiB kept), ~%.0f by CPU (%ld cores saturated by idle guests)\n",
              by_mem, static_cast<double>(avail0) / (kMiB * 1024), by_cpu, cores);
  std::printf("loadavg after the warm-pool phase: %s; at the start of this phase: %s; at the end: "
              "%s\n",
              pool_loadavg.c_str(), load_start.c_str(), load_end.c_str());

  report["cold_boot_ms"] = {{"p50", Percentile(cold, 0.5)}, {"p99", Percentile(cold, 0.99)},
                            {"n", cold.size()}};
  auto series = [&](const Series& s) {
    json j = json::object();
    j["p50"] = Percentile(s.total, 0.5);
    j["p99"] = Percentile(s.total, 0.99);
    j["create_p50"] = Percentile(s.create, 0.5);
    j["create_p99"] = Percentile(s.create, 0.99);
    j["second_command_p50"] = Percentile(s.second, 0.5);
    j["ok"] = s.total.size();
    j["expected"] = s.expected;
    double c50 = Percentile(cold, 0.5);
    j["ratio_p50"] = c50 > 0 ? Percentile(s.total, 0.5) / c50 : 0;
    return j;
  };
  report["warm_pool_ms"] = series(pool);
  report["warm_pool_ms"]["pool_size"] = pool_size;
  report["warm_pool_ms"]["loadavg_end"] = pool_loadavg;
  report["no_pool_ms"] = series(nopool);
  report["warm_pool_sdk_form_ms"] = series(pool_sdk);
  report["idle_memory_mib"] = {{"n", n_mem},
                               {"private", priv_avg},
                               {"pss", pss_avg},
                               {"private_guest_ram", ram_avg},
                               {"memavailable_drop", drop_per},
                               {"cold_boot_private", cold_mem ? cold_mem->private_mib : 0}};
  report["idle_at_once"] = {{"n", n},
                            {"answered", answered},
                            {"max", o.max},
                            {"host_busy", busy.host_busy},
                            {"host_busy_before", quiet.host_busy},
                            {"host_busy_after", quiet_after.host_busy},
                            {"qemu_cores", busy.pids_cores},
                            {"projected_by_memory", by_mem},
                            {"projected_by_cpu", by_cpu}};
  report["targets"] = {{"create_first_output_p50_le_100ms", latency_ok},
                       {"private_per_idle_vm_le_40mib", mem_ok}};
  report["loadavg_end"] = load_end;
  std::printf("%s\n", report.dump().c_str());
  return 0;
}

void Usage() {
  std::fprintf(stderr,
               "usage: vm_bench --phase pool|main --url http://HOST:PORT --api-key KEY\n"
               "                [--count N] [--out FILE]                      (pool)\n"
               "                [--name NAME] [--envd PATH] [--pool-results FILE] [--boots N]\n"
               "                [--idle N] [--max N] [--cache DIR] [--snapshot DIR]  (main)\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--phase") o.phase = v;
    else if (a == "--url") {
      if (!bench::ParseUrl(v, o.kilnd)) {
        Usage();
        return 2;
      }
    } else if (a == "--api-key") o.kilnd.api_key = v;
    else if (a == "--name") o.name = v;
    else if (a == "--envd") o.envd = v;
    else if (a == "--out") o.out = v;
    else if (a == "--pool-results") o.pool_results = v;
    else if (a == "--cache") o.cache = v;
    else if (a == "--snapshot") o.snapshot = v;
    else if (a == "--count") o.count = std::atoi(v.c_str());
    else if (a == "--boots") o.boots = std::atoi(v.c_str());
    else if (a == "--idle") o.idle = std::atoi(v.c_str());
    else if (a == "--max") o.max = std::atoi(v.c_str());
    else {
      Usage();
      return 2;
    }
  }
  if (o.kilnd.api_key.empty()) {
    Usage();
    return 2;
  }
  if (o.phase == "pool" && !o.out.empty()) return PoolPhase(o);
  if (o.phase == "main" && !o.name.empty() && !o.envd.empty() && !o.pool_results.empty()) {
    return MainPhase(o);
  }
  Usage();
  return 2;
}
