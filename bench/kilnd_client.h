#pragma once

// A minimal blocking HTTP/1.1 client for the benchmarks that drive a kilnd over plain HTTP,
// like any SDK-less client: one exchange per connection (Connection: close), chunked bodies
// de-chunked. Plus the measurement every kilnd benchmark shares: create a sandbox, then run
// `echo ready` in it through the proxy (process.Process/Start) until its stdout frame arrives.
// Benchmark code: failures are reported as nullopt/false and a line on stderr, never thrown.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace kiln::bench {

using Clock = std::chrono::steady_clock;

// Where the kilnd listens and the API key it printed.
struct KilndEndpoint {
  std::string host = "127.0.0.1";
  int port = 3000;
  std::string api_key;
};

// "http://HOST:PORT" into `ep`; false when malformed.
inline bool ParseUrl(const std::string& url, KilndEndpoint& ep) {
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) return false;
  std::string rest = url.substr(prefix.size());
  size_t colon = rest.find(':');
  if (colon == std::string::npos) return false;
  ep.host = rest.substr(0, colon);
  ep.port = std::atoi(rest.c_str() + colon + 1);
  return ep.port > 0;
}

// A connected TCP socket (TCP_NODELAY), or -1. With `read_timeout_ms` > 0, a read that waits
// longer fails (SO_RCVTIMEO), so a stuck peer cannot hang the benchmark.
inline int Dial(const std::string& host, int port, int read_timeout_ms = 0) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (read_timeout_ms > 0) {
    timeval tv{read_timeout_ms / 1000, (read_timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

inline bool WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// The text of one request; a POST always carries Content-Type and Content-Length.
inline std::string Request(const std::string& method, const std::string& path,
                           const std::vector<std::string>& headers, const std::string& body,
                           const std::string& content_type = "application/json") {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
  for (const auto& h : headers) r += h + "\r\n";
  if (!body.empty() || method == "POST") {
    r += "Content-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n";
  }
  r += "\r\n" + body;
  return r;
}

// Reads until `until` appears in the data (returns true) or the peer closes (returns true
// only when `until` is empty: read to the end).
inline bool ReadUntil(int fd, std::string& data, const std::string& until) {
  char buf[16384];
  for (;;) {
    if (!until.empty() && data.find(until) != std::string::npos) return true;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return until.empty() && n == 0;
    data.append(buf, static_cast<size_t>(n));
  }
}

struct HttpResult {
  int status = 0;
  std::string body;
};

// Sends `req` on the connected `fd` and reads the whole response (the peer closes).
inline std::optional<HttpResult> ExchangeOn(int fd, const std::string& req) {
  std::string data;
  if (!WriteAll(fd, req) || !ReadUntil(fd, data, "") || data.size() < 12) return std::nullopt;
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

// One request to the kilnd on a new connection.
inline std::optional<HttpResult> Exchange(const KilndEndpoint& ep, const std::string& req,
                                          int read_timeout_ms = 0) {
  int fd = Dial(ep.host, ep.port, read_timeout_ms);
  if (fd < 0) return std::nullopt;
  auto r = ExchangeOn(fd, req);
  close(fd);
  return r;
}

// base64("ready\n"): the stdout data event of `echo ready` in a process.Process/Start stream.
inline constexpr char kReadyBase64[] = "cmVhZHkK";

// How `echo ready` is started: as the SDK's commands.run("echo ready") sends it (a login bash,
// where echo is a builtin), or as a process of its own (/bin/echo, a binary the sandbox may not
// have run yet).
enum class EchoForm { kSdk, kExec };

inline const char* EchoFormName(EchoForm form) {
  return form == EchoForm::kSdk ? "bash -l -c 'echo ready' (the SDK's commands.run)"
                                : "/bin/echo ready (a process of its own)";
}

// The Connect-RPC envelope of a Process/Start of `echo ready` without stdin.
inline std::string EchoReadyEnvelope(EchoForm form = EchoForm::kExec) {
  std::string msg =
      form == EchoForm::kSdk
          ? R"({"process":{"cmd":"/bin/bash","args":["-l","-c","echo ready"]},"stdin":false})"
          : R"({"process":{"cmd":"/bin/echo","args":["ready"]},"stdin":false})";
  std::string envelope(5, '\0');
  envelope[1] = static_cast<char>((msg.size() >> 24) & 0xff);
  envelope[2] = static_cast<char>((msg.size() >> 16) & 0xff);
  envelope[3] = static_cast<char>((msg.size() >> 8) & 0xff);
  envelope[4] = static_cast<char>(msg.size() & 0xff);
  return envelope + msg;
}

// The request for `echo ready`; `headers` route it (through the kilnd proxy: sandbox id,
// port and access token; straight to an agent: none).
inline std::string EchoReadyRequest(const std::vector<std::string>& headers,
                                    EchoForm form = EchoForm::kExec) {
  std::vector<std::string> h = headers;
  h.push_back("Connect-Protocol-Version: 1");
  return Request("POST", "/process.Process/Start", h, EchoReadyEnvelope(form),
                 "application/connect+json");
}

// Sends the `echo ready` request on the connected `fd` and reads until its output arrives;
// false (with what was read in `data`) when the stream ends or fails first.
inline bool EchoReadyOn(int fd, const std::vector<std::string>& headers, std::string& data,
                        EchoForm form = EchoForm::kExec) {
  return WriteAll(fd, EchoReadyRequest(headers, form)) && ReadUntil(fd, data, kReadyBase64);
}

// Runs `echo ready` in sandbox `id` through the kilnd proxy until its output arrives.
inline bool RunEchoReady(const KilndEndpoint& ep, const std::string& id, const std::string& token,
                         int read_timeout_ms = 0, EchoForm form = EchoForm::kExec) {
  int fd = Dial(ep.host, ep.port, read_timeout_ms);
  if (fd < 0) return false;
  std::string data;
  bool ok = EchoReadyOn(fd,
                        {"E2b-Sandbox-Id: " + id, "E2b-Sandbox-Port: 49983",
                         "X-Access-Token: " + token},
                        data, form);
  close(fd);
  if (!ok) std::fprintf(stderr, "start failed: %s\n", data.c_str());
  return ok;
}

struct CreateSample {
  double ms;         // create -> first output
  double create_ms;  // of which the create call
  std::string id;
  std::string token;
};

// POST /v2/sandboxes for `template_id`, then `echo ready` in it through the proxy: the time
// until its output arrived and the sandbox (left running).
inline std::optional<CreateSample> CreateAndRunEcho(const KilndEndpoint& ep,
                                                    const std::string& template_id = "base",
                                                    int timeout_s = 120, int read_timeout_ms = 0,
                                                    EchoForm form = EchoForm::kExec) {
  auto t0 = Clock::now();
  std::string body = R"({"templateID":")" + template_id + R"(","timeout":)" +
                     std::to_string(timeout_s) + "}";
  auto created = Exchange(ep, Request("POST", "/v2/sandboxes", {"X-API-Key: " + ep.api_key}, body),
                          read_timeout_ms);
  if (!created || created->status != 201) {
    std::fprintf(stderr, "create failed: %d %s\n", created ? created->status : -1,
                 created ? created->body.c_str() : "");
    return std::nullopt;
  }
  auto t_created = Clock::now();
  nlohmann::json j = nlohmann::json::parse(created->body, nullptr, false);
  CreateSample s;
  s.id = j.is_object() ? j.value("sandboxID", "") : "";
  s.token = j.is_object() ? j.value("envdAccessToken", "") : "";
  if (!RunEchoReady(ep, s.id, s.token, read_timeout_ms, form)) return std::nullopt;
  auto t1 = Clock::now();
  s.ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  s.create_ms = std::chrono::duration<double, std::milli>(t_created - t0).count();
  return s;
}

inline void KillSandbox(const KilndEndpoint& ep, const std::string& id) {
  (void)Exchange(ep, Request("DELETE", "/sandboxes/" + id, {"X-API-Key: " + ep.api_key}, ""));
}

// The p-quantile (0..1) of `v`, nearest rank; 0 for no samples.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// MemAvailable from /proc/meminfo, in bytes.
inline uint64_t MemAvailable() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  uint64_t v = 0;
  while (in >> key >> v >> unit) {
    if (key == "MemAvailable:") return v * 1024;
  }
  return 0;
}

}  // namespace kiln::bench
