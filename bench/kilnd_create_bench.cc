// kilnd create -> first command output, against bubblewrap running /bin/true, in one run;
// and the host memory of many idle sandboxes.
//
//   kilnd_create_bench --url http://127.0.0.1:PORT --api-key KEY --rootfs DIR
//                      [--count 200] [--parallel 16] [--idle 500]
//
// The kiln side uses plain HTTP like any SDK-less client: POST /v2/sandboxes, then
// process.Process/Start of `echo ready` through the proxy, timed until the stdout frame
// arrives. The sandbox is killed afterwards, outside the timed part. The baseline is
// `bwrap --unshare-all` on the same template rootfs running /bin/true, timed until it exits.

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kilnd_client.h"

namespace {

using kiln::bench::Clock;
using kiln::bench::MemAvailable;
using kiln::bench::Percentile;
namespace bench = kiln::bench;

struct Options {
  bench::KilndEndpoint kilnd;
  std::string rootfs;
  int count = 200;
  int parallel = 16;
  int idle = 500;
};

// create -> first output of `echo ready`. Returns the time and the sandbox id.
std::optional<bench::CreateSample> KilnCreateAndRun(const Options& o) {
  return bench::CreateAndRunEcho(o.kilnd);
}

void Kill(const Options& o, const std::string& id) { bench::KillSandbox(o.kilnd, id); }

std::optional<double> BwrapTrue(const Options& o) {
  auto t0 = Clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execlp("bwrap", "bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", o.rootfs.c_str(),
           "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--new-session",
           "/bin/true", static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  auto t1 = Clock::now();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

// Runs `fn` count times on `threads` threads; collects the durations.
template <typename Fn>
std::vector<double> Run(int count, int threads, Fn fn) {
  std::vector<double> out;
  std::mutex mu;
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      while (next.fetch_add(1) < count) {
        auto ms = fn();
        if (ms) {
          std::lock_guard l(mu);
          out.push_back(*ms);
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  return out;
}

void Report(const char* what, const std::vector<double>& kiln, const std::vector<double>& base,
            int expected) {
  double kp50 = Percentile(kiln, 0.5), kp99 = Percentile(kiln, 0.99);
  double bp50 = Percentile(base, 0.5), bp99 = Percentile(base, 0.99);
  std::printf("%-34s kiln p50 %7.2f ms p99 %7.2f ms (%zu/%d ok) | bwrap p50 %7.2f ms p99 %7.2f ms | "
              "ratio p50 %.2fx p99 %.2fx\n",
              what, kp50, kp99, kiln.size(), expected, bp50, bp99, bp50 > 0 ? kp50 / bp50 : 0,
              bp99 > 0 ? kp99 / bp99 : 0);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--url" && bench::ParseUrl(v, o.kilnd)) continue;
    if (a == "--api-key") o.kilnd.api_key = v;
    else if (a == "--rootfs") o.rootfs = v;
    else if (a == "--count") o.count = std::atoi(v.c_str());
    else if (a == "--parallel") o.parallel = std::atoi(v.c_str());
    else if (a == "--idle") o.idle = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "usage: kilnd_create_bench --url http://HOST:PORT --api-key KEY --rootfs DIR "
                           "[--count N] [--parallel N] [--idle N]\n");
      return 2;
    }
  }
  if (o.kilnd.api_key.empty() || o.rootfs.empty()) {
    std::fprintf(stderr, "--api-key and --rootfs are required\n");
    return 2;
  }

  // Warm-up (first connections, page cache).
  for (int i = 0; i < 5; ++i) {
    if (auto s = KilnCreateAndRun(o)) Kill(o, s->id);
    (void)BwrapTrue(o);
  }

  std::vector<std::string> to_kill;
  std::vector<double> create_only;
  std::mutex kill_mu;
  auto kiln_once = [&]() -> std::optional<double> {
    auto s = KilnCreateAndRun(o);
    if (!s) return std::nullopt;
    std::lock_guard l(kill_mu);
    to_kill.push_back(s->id);
    create_only.push_back(s->create_ms);
    return s->ms;
  };
  auto drain = [&] {
    for (const auto& id : to_kill) Kill(o, id);
    to_kill.clear();
  };
  auto bwrap_once = [&]() { return BwrapTrue(o); };

  std::printf("create -> first command output (%d sandboxes), vs bwrap /bin/true\n", o.count);
  auto kseq = Run(o.count, 1, kiln_once);
  drain();
  auto bseq = Run(o.count, 1, bwrap_once);
  Report("sequential", kseq, bseq, o.count);
  std::printf("%-34s of which the create call p50 %7.2f ms p99 %7.2f ms\n", "", Percentile(create_only, 0.5),
              Percentile(create_only, 0.99));
  create_only.clear();
  auto kpar = Run(o.count, o.parallel, kiln_once);
  drain();
  auto bpar = Run(o.count, o.parallel, bwrap_once);
  Report(("parallel x" + std::to_string(o.parallel)).c_str(), kpar, bpar, o.count);
  std::printf("%-34s of which the create call p50 %7.2f ms p99 %7.2f ms\n", "", Percentile(create_only, 0.5),
              Percentile(create_only, 0.99));

  if (o.idle > 0) {
    uint64_t before = MemAvailable();
    std::vector<std::string> ids;
    for (int i = 0; i < o.idle; ++i) {
      auto s = KilnCreateAndRun(o);
      if (!s) break;
      ids.push_back(s->id);
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));  // let the idle sandboxes settle
    uint64_t after = MemAvailable();
    double per = ids.empty() ? 0 : static_cast<double>(before > after ? before - after : 0) /
                                       static_cast<double>(ids.size()) / (1 << 20);
    std::printf("idle sandboxes: %zu, host memory used %.1f MiB, %.2f MiB per sandbox (target <= 8)\n",
                ids.size(), static_cast<double>(before - after) / (1 << 20), per);
    for (const auto& id : ids) Kill(o, id);
  }
  return 0;
}
