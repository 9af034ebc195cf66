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

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

struct Options {
  std::string host = "127.0.0.1";
  int port = 3000;
  std::string api_key;
  std::string rootfs;
  int count = 200;
  int parallel = 16;
  int idle = 500;
};

// One blocking HTTP/1.1 exchange per connection (Connection: close), enough for a benchmark
// client. Returns the status and the raw body (chunked bodies are de-chunked).
struct HttpResult {
  int status = 0;
  std::string body;
};

int Dial(const Options& o) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(o.port));
  inet_pton(AF_INET, o.host.c_str(), &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string Request(const std::string& method, const std::string& path,
                    const std::vector<std::string>& headers, const std::string& body,
                    const std::string& content_type = "application/json") {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
  for (const auto& h : headers) r += h + "\r\n";
  if (!body.empty() || method == "POST") {
    r += "Content-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  r += "\r\n" + body;
  return r;
}

// Reads until `until` appears in the data (returns true) or the peer closes.
bool ReadUntil(int fd, std::string& data, const std::string& until) {
  char buf[16384];
  for (;;) {
    if (!until.empty() && data.find(until) != std::string::npos) return true;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return until.empty();
    data.append(buf, static_cast<size_t>(n));
  }
}

std::optional<HttpResult> Exchange(const Options& o, const std::string& req) {
  int fd = Dial(o);
  if (fd < 0) return std::nullopt;
  std::string data;
  bool ok = WriteAll(fd, req) && ReadUntil(fd, data, "");
  close(fd);
  if (!ok || data.size() < 12) return std::nullopt;
  HttpResult r;
  r.status = std::atoi(data.c_str() + 9);
  size_t hdr_end = data.find("\r\n\r\n");
  if (hdr_end == std::string::npos) return std::nullopt;
  std::string head = data.substr(0, hdr_end);
  std::string rest = data.substr(hdr_end + 4);
  if (head.find("chunked") != std::string::npos) {
    size_t p = 0;
    while (p < rest.size()) {
      size_t eol = rest.find("\r\n", p);
      if (eol == std::string::npos) break;
      size_t len = std::strtoul(rest.c_str() + p, nullptr, 16);
      if (len == 0) break;
      r.body.append(rest, eol + 2, len);
      p = eol + 2 + len + 2;
    }
  } else {
    r.body = rest;
  }
  return r;
}

struct Sample {
  double ms;         // create -> first output
  double create_ms;  // of which the create call
  std::string id;
};

// create -> first output of `echo ready`. Returns the time and the sandbox id.
std::optional<Sample> KilnCreateAndRun(const Options& o) {
  auto t0 = Clock::now();
  auto created = Exchange(o, Request("POST", "/v2/sandboxes", {"X-API-Key: " + o.api_key},
                                     R"({"templateID":"base","timeout":120})"));
  if (!created || created->status != 201) {
    std::fprintf(stderr, "create failed: %d %s\n", created ? created->status : -1,
                 created ? created->body.c_str() : "");
    return std::nullopt;
  }
  auto t_created = Clock::now();
  json j = json::parse(created->body, nullptr, false);
  std::string id = j.value("sandboxID", "");
  std::string token = j.value("envdAccessToken", "");
  std::string msg = R"({"process":{"cmd":"/bin/echo","args":["ready"]},"stdin":false})";
  std::string envelope(5, '\0');
  envelope[1] = static_cast<char>((msg.size() >> 24) & 0xff);
  envelope[2] = static_cast<char>((msg.size() >> 16) & 0xff);
  envelope[3] = static_cast<char>((msg.size() >> 8) & 0xff);
  envelope[4] = static_cast<char>(msg.size() & 0xff);
  envelope += msg;
  int fd = Dial(o);
  if (fd < 0) return std::nullopt;
  std::string req = Request("POST", "/process.Process/Start",
                            {"E2b-Sandbox-Id: " + id, "E2b-Sandbox-Port: 49983",
                             "X-Access-Token: " + token, "Connect-Protocol-Version: 1"},
                            envelope, "application/connect+json");
  std::string data;
  // "cmVhZHkK" is base64("ready\n"): the stdout data event.
  bool ok = WriteAll(fd, req) && ReadUntil(fd, data, "cmVhZHkK");
  auto t1 = Clock::now();
  close(fd);
  if (!ok) {
    std::fprintf(stderr, "start failed: %s\n", data.c_str());
    return std::nullopt;
  }
  return Sample{std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(t_created - t0).count(), id};
}

void Kill(const Options& o, const std::string& id) {
  (void)Exchange(o, Request("DELETE", "/sandboxes/" + id, {"X-API-Key: " + o.api_key}, ""));
}

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

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
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

uint64_t MemAvailable() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  uint64_t v = 0;
  while (in >> key >> v >> unit) {
    if (key == "MemAvailable:") return v * 1024;
  }
  return 0;
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

bool ParseUrl(const std::string& url, Options& o) {
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) return false;
  std::string rest = url.substr(prefix.size());
  size_t colon = rest.find(':');
  if (colon == std::string::npos) return false;
  o.host = rest.substr(0, colon);
  o.port = std::atoi(rest.c_str() + colon + 1);
  return o.port > 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--url" && ParseUrl(v, o)) continue;
    if (a == "--api-key") o.api_key = v;
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
  if (o.api_key.empty() || o.rootfs.empty()) {
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
