// kiln-interp benchmarks (bench/interp_bench.sh runs them with their baselines):
//   --interp URL --count N        print(1) round trips through kiln-interp's /execute on one
//                                  keep-alive connection (after warm-up cells)
//   --kilnd URL --api-key K --count N
//                                  create a code-interpreter-v1 sandbox, then its first print(1)
//                                  through kilnd's proxy: create -> first result (the warm pool
//                                  is allowed to refill between samples)
// Prints "<what> p50_ms p99_ms" lines. No SDK: a plain HTTP/1.1 client.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

struct Endpoint {
  std::string host = "127.0.0.1";
  int port = 0;
};

bool ParseUrl(const std::string& url, Endpoint& e) {
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) return false;
  std::string rest = url.substr(prefix.size());
  size_t colon = rest.find(':');
  if (colon == std::string::npos) return false;
  e.host = rest.substr(0, colon);
  e.port = std::atoi(rest.c_str() + colon + 1);
  return e.port > 0;
}

// One keep-alive HTTP/1.1 connection.
class Conn {
 public:
  explicit Conn(const Endpoint& e) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(e.port));
    inet_pton(AF_INET, e.host.c_str(), &a.sin_addr);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~Conn() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return fd_ >= 0; }

  // Sends a request; returns status and the de-chunked body (read to its end).
  std::optional<std::pair<int, std::string>> Call(const std::string& method, const std::string& path,
                                                  const std::vector<std::string>& headers,
                                                  const std::string& body) {
    std::string r = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n";
    for (const auto& h : headers) r += h + "\r\n";
    if (method != "GET") {
      r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    }
    r += "\r\n" + body;
    if (!WriteAll(r)) return std::nullopt;
    std::string head;
    if (!ReadHead(head)) return std::nullopt;
    int status = std::atoi(head.c_str() + 9);
    std::string out;
    std::string lower = head;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    if (lower.find("transfer-encoding: chunked") != std::string::npos) {
      for (;;) {
        std::string line;
        if (!ReadLine(line)) return std::nullopt;
        size_t len = std::strtoul(line.c_str(), nullptr, 16);
        if (len == 0) {
          std::string end;
          if (!ReadLine(end)) return std::nullopt;
          break;
        }
        std::string chunk;
        if (!ReadN(len + 2, chunk)) return std::nullopt;
        out.append(chunk, 0, len);
      }
    } else {
      size_t pos = lower.find("content-length:");
      size_t len = pos == std::string::npos ? 0 : std::strtoul(lower.c_str() + pos + 15, nullptr, 10);
      if (!ReadN(len, out)) return std::nullopt;
    }
    return std::make_pair(status, out);
  }

 private:
  bool WriteAll(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = write(fd_, s.data() + off, s.size() - off);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  bool Fill() {
    char buf[65536];
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) return false;
    buf_.append(buf, static_cast<size_t>(n));
    return true;
  }
  bool ReadHead(std::string& head) {
    for (;;) {
      size_t end = buf_.find("\r\n\r\n");
      if (end != std::string::npos) {
        head = buf_.substr(0, end);
        buf_.erase(0, end + 4);
        return true;
      }
      if (!Fill()) return false;
    }
  }
  bool ReadLine(std::string& line) {
    for (;;) {
      size_t end = buf_.find("\r\n");
      if (end != std::string::npos) {
        line = buf_.substr(0, end);
        buf_.erase(0, end + 2);
        return true;
      }
      if (!Fill()) return false;
    }
  }
  bool ReadN(size_t n, std::string& out) {
    while (buf_.size() < n) {
      if (!Fill()) return false;
    }
    out = buf_.substr(0, n);
    buf_.erase(0, n);
    return true;
  }

  int fd_ = -1;
  std::string buf_;
};

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

// POST /execute; true when the stream has stdout "1\n" and ends with end_of_execution.
bool PrintOne(Conn& c, const std::vector<std::string>& headers) {
  auto r = c.Call("POST", "/execute", headers, R"j({"code":"print(1)"})j");
  if (!r || r->first != 200) {
    std::fprintf(stderr, "execute: %s\n", r ? (std::to_string(r->first) + " " + r->second).c_str() : "no answer");
    return false;
  }
  bool ok = r->second.find("\"text\":\"1\\n\"") != std::string::npos &&
            r->second.find("end_of_execution") != std::string::npos;
  if (!ok) std::fprintf(stderr, "unexpected stream: %s\n", r->second.c_str());
  return ok;
}

int InterpRoundTrips(const Endpoint& e, int count) {
  Conn c(e);
  if (!c.ok()) {
    std::fprintf(stderr, "cannot connect to kiln-interp\n");
    return 1;
  }
  std::vector<std::string> headers;
  for (int i = 0; i < 20; ++i) {
    if (!PrintOne(c, headers)) {
      std::fprintf(stderr, "warm-up cell failed\n");
      return 1;
    }
  }
  std::vector<double> samples;
  for (int i = 0; i < count; ++i) {
    auto t = Clock::now();
    if (!PrintOne(c, headers)) {
      std::fprintf(stderr, "cell %d failed\n", i);
      return 1;
    }
    samples.push_back(Ms(Clock::now() - t));
  }
  std::printf("roundtrip %.3f %.3f\n", Percentile(samples, 0.5), Percentile(samples, 0.99));
  return 0;
}

// Ready sandboxes in the code-interpreter pool, from kilnd's /kiln/status.
int PoolReady(const Endpoint& e, const std::string& key) {
  Conn c(e);
  auto r = c.Call("GET", "/kiln/status", {"X-API-Key: " + key}, "");
  if (!r || r->first != 200) return -1;
  json j = json::parse(r->second, nullptr, false);
  if (j.is_discarded()) return -1;
  auto pool = j.find("pool");
  if (pool == j.end() || !pool->is_object() || !pool->contains("code-interpreter-v1")) return -1;
  return (*pool)["code-interpreter-v1"].value("ready", 0);
}

int CreateToFirstResult(const Endpoint& e, const std::string& key, int count) {
  std::vector<double> samples;
  std::vector<double> creates;
  for (int i = 0; i < count; ++i) {
    // The warm pool refills behind each claim (a kernel start); wait for it, as a service
    // sized for its load would have it ready.
    auto deadline = Clock::now() + std::chrono::seconds(180);
    while (PoolReady(e, key) < 1) {
      if (Clock::now() > deadline) {
        std::fprintf(stderr, "the code-interpreter pool did not refill\n");
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Conn api(e);
    Conn proxy(e);
    if (!api.ok() || !proxy.ok()) return 1;
    auto t = Clock::now();
    auto created = api.Call("POST", "/v2/sandboxes", {"X-API-Key: " + key},
                            R"({"templateID":"code-interpreter-v1","timeout":120})");
    auto t_created = Clock::now();
    if (!created || created->first != 201) {
      std::fprintf(stderr, "create failed: %s\n", created ? created->second.c_str() : "no answer");
      return 1;
    }
    json j = json::parse(created->second, nullptr, false);
    std::string id = j.value("sandboxID", "");
    std::string token = j.value("envdAccessToken", "");
    std::vector<std::string> headers = {"E2b-Sandbox-Id: " + id, "E2b-Sandbox-Port: 49999",
                                        "X-Access-Token: " + token};
    bool ok = PrintOne(proxy, headers);
    auto t_done = Clock::now();
    api.Call("DELETE", "/sandboxes/" + id, {"X-API-Key: " + key}, "");
    if (!ok) {
      std::fprintf(stderr, "first cell of %s failed\n", id.c_str());
      return 1;
    }
    samples.push_back(Ms(t_done - t));
    creates.push_back(Ms(t_created - t));
  }
  std::printf("create_call %.3f %.3f\n", Percentile(creates, 0.5), Percentile(creates, 0.99));
  std::printf("create_to_first_result %.3f %.3f\n", Percentile(samples, 0.5), Percentile(samples, 0.99));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string interp, kilnd, key;
  int count = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--interp") interp = argv[i + 1];
    else if (a == "--kilnd") kilnd = argv[i + 1];
    else if (a == "--api-key") key = argv[i + 1];
    else if (a == "--count") count = std::atoi(argv[i + 1]);
  }
  Endpoint e;
  if (!interp.empty() && ParseUrl(interp, e)) return InterpRoundTrips(e, std::max(count, 1));
  if (!kilnd.empty() && ParseUrl(kilnd, e) && !key.empty()) {
    return CreateToFirstResult(e, key, std::max(count, 1));
  }
  std::fprintf(stderr, "usage: interp_bench --interp URL [--count N] | --kilnd URL --api-key KEY [--count N]\n");
  return 2;
}
