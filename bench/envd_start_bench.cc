// envd_start_bench: what does starting a process through kiln-envd cost compared with starting
// it directly?
//
// One run measures, interleaved iteration by iteration so that machine noise hits both sides
// alike:
//   agent      one process.Process/Start round trip of /bin/true on a kept-alive HTTP/1.1
//              connection: send the Start envelope, read the stream until the end-stream frame.
//   fork+exec  fork() + execv("/bin/true") + waitpid() from this process.
// Warm-up iterations are excluded. Prints medians, p90, p99, the ratio agent/fork+exec at the
// median against the target (within 2x), and one machine-readable JSON line. Missing the
// target does not fail the run; a broken agent (HTTP error, error frame, non-zero exit) does.
//
// kiln-envd runs out of process, as in a sandbox: the bench starts the given binary as a child
// on a free loopback port and kills it by PID at the end. The agent must be allowed to run
// processes as the requested user (root by default, so run the bench as root, as
// `tools/dev bench` does).
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <expected>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr double kTargetRatio = 2.0;

struct Flags {
  std::string envd_path;
  int iterations = 500;
  int warmup = 50;
  std::string user;  // Basic auth user for Start; empty = the agent's default user
  std::string cmd = "/bin/true";
};

void Usage() {
  std::fprintf(stderr,
               "usage: envd_start_bench --envd PATH [--iterations N (500)] [--warmup N (50)]\n"
               "                        [--user NAME] [--cmd /bin/true]\n");
}

bool ParsePositive(const char* s, int& out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != 0 || v < 0 || v > 10000000) return false;
  out = static_cast<int>(v);
  return true;
}

bool ParseFlags(int argc, char** argv, Flags& f) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (!v) return false;
    ++i;
    if (a == "--envd") {
      f.envd_path = v;
    } else if (a == "--iterations") {
      if (!ParsePositive(v, f.iterations) || f.iterations == 0) return false;
    } else if (a == "--warmup") {
      if (!ParsePositive(v, f.warmup)) return false;
    } else if (a == "--user") {
      f.user = v;
    } else if (a == "--cmd") {
      f.cmd = v;
    } else {
      return false;
    }
  }
  return !f.envd_path.empty();
}

// A failed step, as text for the operator; every function below returns one instead of
// exiting so that the agent child is always stopped by its owner.
template <typename T>
using Result = std::expected<T, std::string>;
std::unexpected<std::string> Fail(std::string msg) { return std::unexpected(std::move(msg)); }

// --- The agent process ---------------------------------------------------------------------

// A free loopback port: bind port 0, read it back, close. Racy in theory, fine on a bench box.
Result<uint16_t> PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Fail(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    close(fd);
    return Fail(std::string("bind: ") + std::strerror(err));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// kiln-envd started as a child; killed (by its PID) and reaped on destruction.
class AgentProcess {
 public:
  AgentProcess() = default;
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;
  ~AgentProcess() { Stop(); }

  Result<void> Start(const std::string& path, uint16_t port) {
    std::string port_text = std::to_string(port);
    std::vector<std::string> args = {path, "--listen", "127.0.0.1", "--port", port_text,
                                     "--log-level", "warn"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int err = posix_spawn(&pid_, path.c_str(), nullptr, nullptr, argv.data(), environ);
    if (err != 0) {
      pid_ = -1;
      return Fail("spawn " + path + ": " + std::strerror(err));
    }
    return {};
  }

  pid_t pid() const { return pid_; }

  // True while the child has not exited.
  bool Alive() {
    if (pid_ <= 0) return false;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  // SIGTERM, then SIGKILL after 2 s; always reaps.
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 200; ++i) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

// --- HTTP client ---------------------------------------------------------------------------

// One kept-alive HTTP/1.1 connection to the agent. Reads time out after 10 s.
class Connection {
 public:
  explicit Connection(uint16_t port) : port_(port), socket_(io_) {}

  bool Open() {
    error_code ec;
    socket_ = tcp::socket(io_);
    socket_.connect(tcp::endpoint(net::ip::address_v4::loopback(), port_), ec);
    if (ec) return false;
    int one = 1;
    setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{10, 0};
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    buffer_.clear();
    ++opens_;
    return true;
  }

  tcp::socket& socket() { return socket_; }
  beast::flat_buffer& buffer() { return buffer_; }
  int opens() const { return opens_; }

 private:
  uint16_t port_;
  net::io_context io_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
  int opens_ = 0;
};

// GET /health until 204 or `timeout`.
bool WaitHealthy(uint16_t port, AgentProcess& agent, std::chrono::seconds timeout) {
  auto until = Clock::now() + timeout;
  while (Clock::now() < until && agent.Alive()) {
    Connection c(port);
    if (c.Open()) {
      bhttp::request<bhttp::empty_body> req{bhttp::verb::get, "/health", 11};
      req.set(bhttp::field::host, "127.0.0.1");
      bhttp::response<bhttp::string_body> res;
      error_code ec;
      bhttp::write(c.socket(), req, ec);
      if (!ec) bhttp::read(c.socket(), c.buffer(), res, ec);
      if (!ec && res.result_int() == 204) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string Envelope(uint8_t flags, std::string_view payload) {
  std::string out(5, '\0');
  uint32_t n = static_cast<uint32_t>(payload.size());
  out[0] = static_cast<char>(flags);
  for (int i = 0; i < 4; ++i) out[1 + i] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
  out += payload;
  return out;
}

// The Start request exactly as the SDK's commands.run() frames it (process.proto JSON).
bhttp::request<bhttp::string_body> MakeStartRequest(const Flags& flags) {
  json msg = {{"process", {{"cmd", flags.cmd}, {"args", json::array()}}}, {"stdin", false}};
  bhttp::request<bhttp::string_body> req{bhttp::verb::post, "/process.Process/Start", 11};
  req.set(bhttp::field::host, "127.0.0.1");
  req.set(bhttp::field::content_type, "application/connect+json");
  req.set("Connect-Protocol-Version", "1");
  req.set("Connect-Timeout-Ms", "60000");
  req.set("Keepalive-Ping-Interval", "50");
  if (!flags.user.empty()) {
    // Base64 of "<user>:" without a dependency on kiln's libraries.
    static constexpr char kB64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string in = flags.user + ":", out;
    for (size_t i = 0; i < in.size(); i += 3) {
      uint32_t v = static_cast<uint8_t>(in[i]) << 16;
      if (i + 1 < in.size()) v |= static_cast<uint8_t>(in[i + 1]) << 8;
      if (i + 2 < in.size()) v |= static_cast<uint8_t>(in[i + 2]);
      out += kB64[(v >> 18) & 63];
      out += kB64[(v >> 12) & 63];
      out += i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=';
      out += i + 2 < in.size() ? kB64[v & 63] : '=';
    }
    req.set(bhttp::field::authorization, "Basic " + out);
  }
  req.body() = Envelope(0, msg.dump());
  req.prepare_payload();
  return req;
}

// What one Start stream said; `error` is empty when it ran as expected.
struct StreamCheck {
  bool saw_start = false;
  bool saw_end = false;
  bool done = false;  // end-stream frame received
  std::string error;
};

// Consumes the complete frames at the front of `body` (from `offset`).
void ScanFrames(const std::string& body, size_t& offset, StreamCheck& check) {
  while (!check.done && body.size() - offset >= 5) {
    auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(body[offset + i])); };
    uint32_t len = (b(1) << 24) | (b(2) << 16) | (b(3) << 8) | b(4);
    if (body.size() - offset - 5 < len) return;
    uint8_t flags = static_cast<uint8_t>(b(0));
    json j = json::parse(body.substr(offset + 5, len), nullptr, false);
    offset += 5 + len;
    if (j.is_discarded()) {
      check.error = "frame is not JSON";
    } else if (flags & 0x02) {
      check.done = true;
      if (j.contains("error")) check.error = "stream ended with error " + j["error"].dump();
      else if (!check.saw_start || !check.saw_end) check.error = "stream lacks start or end event";
    } else if (const json* ev = j.contains("event") ? &j["event"] : nullptr; !ev) {
      check.error = "message without event: " + j.dump();
    } else if (ev->contains("start")) {
      check.saw_start = true;
    } else if (ev->contains("end")) {
      check.saw_end = true;
      int64_t code = (*ev)["end"].value("exitCode", int64_t{0});
      if (code != 0) check.error = "process exited with " + (*ev)["end"].dump();
    } else if (!check.saw_start) {
      check.error = "first event is not start: " + j.dump();
    }
    if (!check.error.empty()) return;
  }
}

// One timed Start round trip in microseconds; any protocol failure is an error.
Result<double> TimeAgentStart(Connection& conn, const bhttp::request<bhttp::string_body>& req) {
  auto t0 = Clock::now();
  error_code ec;
  bhttp::write(conn.socket(), req, ec);
  if (ec) return Fail("write Start request: " + ec.message());
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  bhttp::read_header(conn.socket(), conn.buffer(), parser, ec);
  if (ec) return Fail("read Start response header: " + ec.message());
  if (parser.get().result_int() != 200) {
    bhttp::read(conn.socket(), conn.buffer(), parser, ec);
    return Fail("process.Process/Start answered HTTP " + std::to_string(parser.get().result_int()) +
        " " + parser.get().body());
  }
  StreamCheck check;
  size_t offset = 0;
  while (!check.done && check.error.empty() && !parser.is_done()) {
    bhttp::read_some(conn.socket(), conn.buffer(), parser, ec);
    if (ec) return Fail("read Start stream: " + ec.message());
    ScanFrames(parser.get().body(), offset, check);
  }
  auto t1 = Clock::now();
  if (!check.error.empty()) return Fail(check.error);
  if (!check.done) return Fail("stream finished without an end-stream frame");
  // Untimed: consume the rest of the HTTP message (the last chunk) before the next request.
  if (!parser.is_done()) bhttp::read(conn.socket(), conn.buffer(), parser, ec);
  if (ec) return Fail("finish Start response: " + ec.message());
  if (!parser.get().keep_alive() && !conn.Open()) return Fail("reconnect to the agent failed");
  return std::chrono::duration<double, std::micro>(t1 - t0).count();
}

// --- Baseline ------------------------------------------------------------------------------

Result<double> TimeForkExec(const char* path) {
  auto t0 = Clock::now();
  pid_t pid = fork();
  if (pid < 0) return Fail(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    char* const argv[] = {const_cast<char*>(path), nullptr};
    execv(path, argv);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  auto t1 = Clock::now();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Fail(std::string("direct run of ") + path + " failed");
  }
  return std::chrono::duration<double, std::micro>(t1 - t0).count();
}

// --- Statistics and report -----------------------------------------------------------------

struct Stats {
  double median = 0, p90 = 0, p99 = 0, min = 0, mean = 0;
};

// Nearest-rank percentile of sorted samples.
double Percentile(const std::vector<double>& sorted, double q) {
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

Stats Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  Stats s;
  size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  s.p90 = Percentile(v, 0.90);
  s.p99 = Percentile(v, 0.99);
  s.min = v.front();
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(n);
  return s;
}

nlohmann::ordered_json StatsJson(const Stats& s) {
  auto r = [](double x) { return std::round(x * 10) / 10; };
  return {{"median", r(s.median)}, {"p90", r(s.p90)}, {"p99", r(s.p99)}, {"min", r(s.min)},
          {"mean", r(s.mean)}};
}

void Report(const Flags& flags, const Stats& agent, const Stats& direct, int opens) {
  double ratio = agent.median / direct.median;
  bool met = ratio <= kTargetRatio;
  std::printf("envd_start_bench: %d iterations each (%d warm-up excluded), cmd %s, "
              "connections opened %d\n",
              flags.iterations, flags.warmup, flags.cmd.c_str(), opens);
  std::printf("%-28s %10s %10s %10s %10s %10s\n", "microseconds", "median", "p90", "p99", "min",
              "mean");
  for (auto [name, s] : {std::pair{"agent Start (HTTP+Connect)", agent},
                         std::pair{"fork+exec+waitpid", direct}}) {
    std::printf("%-28s %10.1f %10.1f %10.1f %10.1f %10.1f\n", name, s.median, s.p90, s.p99,
                s.min, s.mean);
  }
  std::printf("ratio agent/fork+exec at the median: %.2fx (target <= %.1fx: %s)\n", ratio,
              kTargetRatio, met ? "met" : "NOT met");
  nlohmann::ordered_json line = {{"bench", "envd_start"},
               {"iterations", flags.iterations},
               {"warmup", flags.warmup},
               {"cmd", flags.cmd},
               {"agent_us", StatsJson(agent)},
               {"fork_exec_us", StatsJson(direct)},
               {"ratio_median", std::round(ratio * 100) / 100},
               {"target_ratio", kTargetRatio},
               {"target_met", met}};
  std::printf("%s\n", line.dump().c_str());
}

int Error(const std::string& msg) {
  std::fprintf(stderr, "envd_start_bench: %s\n", msg.c_str());
  return 1;
}

// Runs warm-up + measured iterations, alternating agent and direct starts.
Result<std::pair<Stats, Stats>> Measure(const Flags& flags, Connection& conn) {
  auto req = MakeStartRequest(flags);
  std::vector<double> agent_us, direct_us;
  for (int i = 0; i < flags.warmup + flags.iterations; ++i) {
    Result<double> a = TimeAgentStart(conn, req);
    if (!a) return Fail("agent iteration " + std::to_string(i) + ": " + a.error());
    Result<double> d = TimeForkExec(flags.cmd.c_str());
    if (!d) return Fail(d.error());
    if (i >= flags.warmup) {
      agent_us.push_back(*a);
      direct_us.push_back(*d);
    }
  }
  return std::pair{Summarize(std::move(agent_us)), Summarize(std::move(direct_us))};
}

int Run(const Flags& flags) {
  Result<uint16_t> port = PickFreePort();
  if (!port) return Error(port.error());
  AgentProcess agent;  // stopped on every return path
  if (auto st = agent.Start(flags.envd_path, *port); !st) return Error(st.error());
  if (!WaitHealthy(*port, agent, std::chrono::seconds(10))) {
    return Error("kiln-envd did not answer GET /health on 127.0.0.1:" + std::to_string(*port));
  }
  Connection conn(*port);
  if (!conn.Open()) return Error("connect to the agent failed");
  auto stats = Measure(flags, conn);
  agent.Stop();
  if (!stats) return Error(stats.error());
  Report(flags, stats->first, stats->second, conn.opens());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, flags)) {
    Usage();
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  return Run(flags);
}
