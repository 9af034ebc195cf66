#include "envd/process/process_service.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "base/encoding.h"
#include "envd/agent.h"
#include "http/connect.h"

namespace kiln::envd {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using boost::system::error_code;
using nlohmann::json;
using tcp = net::ip::tcp;
using Headers = std::vector<std::pair<std::string, std::string>>;
using namespace std::chrono_literals;

struct Frame {
  uint8_t flags = 0;
  json message;
};

struct StreamReply {
  unsigned status = 0;
  std::string content_type;
  std::vector<Frame> frames;

  // The events before the end-stream frame, as their oneof case names.
  std::vector<std::string> Kinds() const {
    std::vector<std::string> out;
    for (const Frame& f : frames) {
      if (f.flags == 0) out.push_back(f.message["event"].begin().key());
    }
    return out;
  }
  std::string Output(std::string_view stream) const {
    std::string out;
    for (const Frame& f : frames) {
      if (f.flags != 0 || !f.message["event"].contains("data")) continue;
      const json& data = f.message["event"]["data"];
      if (data.contains(stream)) out += Base64Decode(data[stream].get<std::string>()).value();
    }
    return out;
  }
  const json& End() const { return frames.at(frames.size() - 2).message["event"]["end"]; }
  const json& Trailer() const { return frames.back().message; }
};

std::vector<Frame> ParseFrames(std::string_view body) {
  std::vector<Frame> frames;
  while (body.size() >= 5) {
    auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(body[i])); };
    uint32_t len = (b(1) << 24) | (b(2) << 16) | (b(3) << 8) | b(4);
    if (body.size() < 5 + len) break;
    frames.push_back(Frame{static_cast<uint8_t>(b(0)), json::parse(body.substr(5, len))});
    body.remove_prefix(5 + len);
  }
  EXPECT_TRUE(body.empty()) << "trailing bytes after the last frame";
  return frames;
}

// The whole agent served on 127.0.0.1:0 by a background io thread, with accounts from a
// temporary root whose users' homes exist.
class ProcessServiceTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-process-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    std::filesystem::create_directories(root_ + "/etc");
    std::filesystem::create_directories(root_ + "/home/root");
    std::ofstream(root_ + "/etc/passwd") << "root:x:0:0:root:" << root_ << "/home/root:/bin/sh\n";
    std::ofstream(root_ + "/etc/group") << "root:x:0:\n";
    AgentState initial;
    initial.users = sys::UserDb(root_);
    initial.env_vars = {{"GLOBAL_VAR", "g"}};
    agent_ = std::make_unique<Agent>(io_, std::move(initial));
    server_ = std::make_unique<http::Server>(io_, agent_->router(), http::ServerOptions{});
    Status st = server_->Listen("127.0.0.1", 0);
    ASSERT_TRUE(st) << st.error().message();
    server_->Start();
    thread_ = std::thread([this] { io_.run(); });
    // SIGCHLD goes to the io thread only: a blocking read with SO_RCVTIMEO in a test thread
    // would fail with EINTR even under SA_RESTART. Threads started by the test inherit this.
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, &old_mask_);
  }

  void TearDown() override {
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
    io_.stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    agent_.reset();
    std::filesystem::remove_all(root_);
  }

  tcp::socket Connect(net::io_context& io) {
    tcp::socket s(io);
    s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server_->port()));
    timeval tv{10, 0};
    setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return s;
  }

  static bhttp::request<bhttp::string_body> Request(std::string path, std::string content_type,
                                                    std::string body, const Headers& headers) {
    bhttp::request<bhttp::string_body> req{bhttp::verb::post, path, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.set(bhttp::field::content_type, content_type);
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = std::move(body);
    req.prepare_payload();
    return req;
  }

  bhttp::response<bhttp::string_body> Post(std::string path, std::string content_type,
                                           std::string body, const Headers& headers) {
    net::io_context io;
    tcp::socket s = Connect(io);
    error_code ec;
    bhttp::write(s, Request(path, content_type, std::move(body), headers), ec);
    EXPECT_FALSE(ec) << ec.message();
    beast::flat_buffer buf;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(s, buf, res, ec);
    EXPECT_FALSE(ec) << ec.message();
    return res;
  }

  // A whole server-streaming call (`request` is the JSON text of the one message).
  StreamReply Stream(std::string method, std::string request, const Headers& headers = {}) {
    auto res = Post("/process.Process/" + method, "application/connect+json",
                    http::connect::EncodeEnvelope(0, request), headers);
    StreamReply reply;
    reply.status = res.result_int();
    reply.content_type = std::string(res[bhttp::field::content_type]);
    reply.frames = ParseFrames(res.body());
    EXPECT_FALSE(reply.frames.empty());
    if (!reply.frames.empty()) {
      EXPECT_EQ(reply.frames.back().flags, http::connect::kFlagEndStream);
    }
    return reply;
  }

  // A streaming call read in two steps: Open returns once the first frame (the start event,
  // sent after the process gained its subscriber) has arrived; Finish reads the rest.
  struct PendingStream {
    net::io_context io;
    std::optional<tcp::socket> socket;
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
  };
  std::unique_ptr<PendingStream> Open(std::string method, std::string request) {
    auto p = std::make_unique<PendingStream>();
    p->socket.emplace(Connect(p->io));
    bhttp::write(*p->socket, Request("/process.Process/" + method, "application/connect+json",
                                     http::connect::EncodeEnvelope(0, request), {}));
    WaitForFrames(*p, 1);
    return p;
  }
  // Reads until `n` whole frames have arrived.
  void WaitForFrames(PendingStream& p, size_t n) {
    error_code ec;
    while (!ec && !p.parser.is_done() && CountFrames(p.parser.get().body()) < n) {
      bhttp::read_some(*p.socket, p.buffer, p.parser, ec);
    }
    EXPECT_FALSE(ec) << ec.message();
  }
  StreamReply Finish(PendingStream& p) {
    error_code ec;
    if (!p.parser.is_done()) bhttp::read(*p.socket, p.buffer, p.parser, ec);
    EXPECT_FALSE(ec) << ec.message();
    StreamReply reply;
    reply.status = p.parser.get().result_int();
    reply.frames = ParseFrames(p.parser.get().body());
    return reply;
  }
  static size_t CountFrames(std::string_view body) {
    size_t n = 0;
    while (body.size() >= 5) {
      auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(body[i])); };
      uint32_t len = (b(1) << 24) | (b(2) << 16) | (b(3) << 8) | b(4);
      if (body.size() < 5 + len) break;
      body.remove_prefix(5 + len);
      ++n;
    }
    return n;
  }

  std::pair<unsigned, json> Unary(std::string method, std::string request,
                                  const Headers& headers = {}) {
    auto res = Post("/process.Process/" + method, "application/json", request, headers);
    return {res.result_int(), json::parse(res.body(), nullptr, false)};
  }

  // Polls List until a process running `arg` (its last argument) shows up; 0 if none.
  uint32_t WaitForPid(std::string_view arg) {
    for (int i = 0; i < 200; ++i) {
      auto [status, list] = Unary("List", "{}");
      for (const json& p : list["processes"]) {
        if (!p["config"]["args"].empty() && p["config"]["args"].back() == arg) {
          return p["pid"].get<uint32_t>();
        }
      }
      std::this_thread::sleep_for(10ms);
    }
    return 0;
  }

  bool Listed(uint32_t pid) {
    auto [status, list] = Unary("List", "{}");
    for (const json& p : list["processes"]) {
      if (p["pid"] == pid) return true;
    }
    return false;
  }

  static std::string Sh(std::string_view script, std::string_view extra = "") {
    json req = {{"process", {{"cmd", "/bin/sh"}, {"args", json::array({"-c", script})}}}};
    if (!extra.empty()) req.update(json::parse(extra));
    return req.dump();
  }

  std::string root_;
  net::io_context io_{1};
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
  sigset_t old_mask_;
};

// Members of the process group that are still alive (zombies do not count: orphans are
// collected by PID 1, which may take its time).
int LiveGroupMembers(pid_t pgid) {
  int live = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    pid_t ppid = 0, pgrp = 0;
    rest >> state >> ppid >> pgrp;
    if (pgrp == pgid && state != "Z" && state != "X") ++live;
  }
  return live;
}

TEST_F(ProcessServiceTest, StartSendsStartThenOutputThenEnd) {
  StreamReply r = Stream("Start", Sh("echo out; echo err >&2; exit 3", R"({"stdin":false})"));
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "application/connect+json");
  ASSERT_GE(r.frames.size(), 3u);
  EXPECT_GT(r.frames[0].message["event"]["start"]["pid"].get<int>(), 0);
  EXPECT_EQ(r.Kinds().front(), "start");
  EXPECT_EQ(r.Kinds().back(), "end");
  EXPECT_EQ(r.Output("stdout"), "out\n");
  EXPECT_EQ(r.Output("stderr"), "err\n");
  EXPECT_EQ(r.End(), json::parse(R"({"exitCode":3,"exited":true,"status":"exit status 3",
                                     "error":"exit status 3"})"));
  EXPECT_EQ(r.Trailer(), json::object());
}

TEST_F(ProcessServiceTest, EnvironmentCwdAndUmask) {
  json req = {{"process", {{"cmd", "/bin/sh"},
                           {"args", json::array({"-c", "echo $HOME $USER $LOGNAME [$GLOBAL_VAR] [$CALL]; pwd; umask"})},
                           {"cwd", "/tmp"},
                           {"envs", {{"CALL", "c"}}}}}};
  StreamReply r = Stream("Start", req.dump());
  EXPECT_EQ(r.Output("stdout"), root_ + "/home/root root root [g] [c]\n/tmp\n0022\n");
  // The call's env var is gone for the next call; the default cwd is the user's home.
  r = Stream("Start", Sh("echo [$CALL]; pwd"));
  EXPECT_EQ(r.Output("stdout"), "[]\n" + root_ + "/home/root\n");
}

TEST_F(ProcessServiceTest, StartErrorsEndTheStreamWithACode) {
  StreamReply r = Stream("Start", R"({"process":{"cmd":"/bin/sh","cwd":"/nonexistent"}})");
  EXPECT_EQ(r.status, 200u);
  ASSERT_EQ(r.frames.size(), 1u);
  EXPECT_EQ(r.Trailer()["error"]["code"], "invalid_argument");
  r = Stream("Start", R"({"process":{"cmd":"/bin/sh"}})",
             {{"Authorization", "Basic " + Base64Encode("nosuchuser:")}});
  ASSERT_EQ(r.frames.size(), 1u);
  EXPECT_EQ(r.Trailer()["error"]["code"], "unauthenticated");
  r = Stream("Start", R"({"process":{"cmd":"/no/such/program"}})");
  ASSERT_EQ(r.frames.size(), 1u);
  EXPECT_EQ(r.Trailer()["error"]["code"], "invalid_argument");
  for (const char* bad : {R"({"process":{"cmd":5}})", R"({"process":{}})", R"([1,2])", "{"}) {
    r = Stream("Start", bad);
    ASSERT_EQ(r.frames.size(), 1u) << bad;
    EXPECT_EQ(r.Trailer()["error"]["code"], "invalid_argument") << bad;
  }
}

TEST_F(ProcessServiceTest, KeepalivesWhileIdle) {
  StreamReply r = Stream("Start", Sh("sleep 1.3; echo done"), {{"Keepalive-Ping-Interval", "1"}});
  std::vector<std::string> kinds = r.Kinds();
  ASSERT_GE(kinds.size(), 4u);
  EXPECT_EQ(kinds.front(), "start");
  // One keepalive, or more on a loaded machine, while nothing else was sent.
  for (size_t i = 1; i + 2 < kinds.size(); ++i) EXPECT_EQ(kinds[i], "keepalive") << i;
  EXPECT_EQ(kinds[kinds.size() - 2], "data");
  EXPECT_EQ(kinds.back(), "end");
}

TEST_F(ProcessServiceTest, TimeoutKillsTheProcessAndEndsWithDeadlineExceeded) {
  auto started = std::chrono::steady_clock::now();
  StreamReply r = Stream("Start", Sh("sleep 10 & wait"), {{"Connect-Timeout-Ms", "300"}});
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  EXPECT_EQ(r.Kinds(), (std::vector<std::string>{"start"}));
  EXPECT_EQ(r.Trailer()["error"]["code"], "deadline_exceeded");
  uint32_t pid = r.frames[0].message["event"]["start"]["pid"];
  for (int i = 0; i < 100 && Listed(pid); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(Listed(pid));
  for (int i = 0; i < 100 && LiveGroupMembers(static_cast<pid_t>(pid)) > 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(LiveGroupMembers(static_cast<pid_t>(pid)), 0) << "group members survived";
}

TEST_F(ProcessServiceTest, TimeoutZeroMeansNoLimit) {
  StreamReply r = Stream("Start", Sh("sleep 0.2; echo ok"), {{"Connect-Timeout-Ms", "0"}});
  EXPECT_EQ(r.Output("stdout"), "ok\n");
  EXPECT_EQ(r.Trailer(), json::object());
}

TEST_F(ProcessServiceTest, SendInputAndCloseStdin) {
  StreamReply r;
  std::thread call([&] { r = Stream("Start", Sh("cat; echo eof")); });
  uint32_t pid = WaitForPid("cat; echo eof");
  ASSERT_NE(pid, 0u);
  std::string sel = R"({"process":{"pid":)" + std::to_string(pid) + "}";
  auto [st1, res1] = Unary("SendInput", sel + R"(,"input":{"stdin":")" + Base64Encode("hello\n") + R"("}})");
  EXPECT_EQ(st1, 200u);
  EXPECT_EQ(res1, json::object());
  auto [st2, res2] = Unary("CloseStdin", sel + "}");
  EXPECT_EQ(st2, 200u);
  call.join();
  EXPECT_EQ(r.Output("stdout"), "hello\neof\n");
  EXPECT_EQ(r.End()["exitCode"], 0);
}

TEST_F(ProcessServiceTest, ListSignalAndConnectReplay) {
  StreamReply r;
  std::thread call([&] {
    r = Stream("Start", R"({"process":{"cmd":"/bin/sleep","args":["30"],"envs":{"K":"V"}},
                           "tag":"sleeper"})");
  });
  uint32_t pid = WaitForPid("30");
  ASSERT_NE(pid, 0u);
  auto [status, list] = Unary("List", "{}");
  EXPECT_EQ(status, 200u);
  json expected = {{"pid", pid},
                   {"tag", "sleeper"},
                   {"config", {{"cmd", "/bin/sleep"}, {"args", json::array({"30"})}, {"envs", {{"K", "V"}}},
                               {"cwd", root_ + "/home/root"}}}};
  EXPECT_EQ(list["processes"], json::array({expected}));
  auto [sst, sres] = Unary("SendSignal", R"({"process":{"tag":"sleeper"},"signal":"SIGNAL_SIGKILL"})");
  EXPECT_EQ(sst, 200u);
  call.join();
  EXPECT_EQ(r.End()["status"], "signal: killed");
  EXPECT_EQ(r.End()["exitCode"], -1);
  EXPECT_EQ(r.End()["error"], "signal: killed");
  // Exited processes are gone from List and from signals, but Connect still gets the end.
  EXPECT_FALSE(Listed(pid));
  auto [sst2, sres2] = Unary("SendSignal", R"({"process":{"pid":)" + std::to_string(pid) +
                                               R"(},"signal":9})");
  EXPECT_EQ(sst2, 404u);
  EXPECT_EQ(sres2["code"], "not_found");
  StreamReply replay = Stream("Connect", R"({"process":{"pid":)" + std::to_string(pid) + "}}");
  EXPECT_EQ(replay.Kinds(), (std::vector<std::string>{"start", "end"}));
  EXPECT_EQ(replay.frames[0].message["event"]["start"]["pid"], pid);
  EXPECT_EQ(replay.End()["status"], "signal: killed");
}

TEST_F(ProcessServiceTest, ConnectSubscribersGetLiveOutputOnly) {
  auto first = Open("Start", Sh("echo before; read x; echo after", R"({"tag":"t"})"));
  uint32_t pid = WaitForPid("echo before; read x; echo after");
  ASSERT_NE(pid, 0u);
  // "before" has reached the Start stream's client before anyone connects.
  WaitForFrames(*first, 2);
  auto by_tag = Open("Connect", R"({"process":{"tag":"t"}})");
  auto by_pid = Open("Connect", R"({"process":{"pid":)" + std::to_string(pid) + "}}");
  Unary("SendInput", R"({"process":{"pid":)" + std::to_string(pid) + R"(},"input":{"stdin":"eAo="}})");
  StreamReply r1 = Finish(*first), r2 = Finish(*by_tag), r3 = Finish(*by_pid);
  EXPECT_EQ(r1.Output("stdout"), "before\nafter\n");
  for (const StreamReply* r : {&r2, &r3}) {
    EXPECT_EQ(r->Output("stdout"), "after\n");
    EXPECT_EQ(r->frames[0].message["event"]["start"]["pid"], pid);
    EXPECT_EQ(r->Kinds().back(), "end");
    EXPECT_EQ(r->Trailer(), json::object());
  }
}

TEST_F(ProcessServiceTest, UnknownProcessIsNotFound) {
  StreamReply r = Stream("Connect", R"({"process":{"pid":999999}})");
  ASSERT_EQ(r.frames.size(), 1u);
  EXPECT_EQ(r.Trailer()["error"]["code"], "not_found");
  for (const char* m : {"SendSignal", "CloseStdin", "Update", "SendInput"}) {
    std::string req = R"({"process":{"pid":999999},"signal":"SIGNAL_SIGTERM",
                          "input":{"stdin":""},"pty":{"size":{"cols":1,"rows":1}}})";
    auto [status, body] = Unary(m, req);
    EXPECT_EQ(status, 404u) << m;
    EXPECT_EQ(body["code"], "not_found") << m;
  }
}

TEST_F(ProcessServiceTest, BadUnaryRequestsAreInvalidArgument) {
  for (auto [method, req] : std::vector<std::pair<std::string, std::string>>{
           {"SendSignal", R"({"process":{"pid":1},"signal":"SIGNAL_SIGINT"})"},
           {"SendSignal", R"({"process":{},"signal":9})"},
           {"SendInput", R"({"process":{"pid":1},"input":{"stdin":"***"}})"},
           {"Update", R"({"process":{"pid":1},"pty":{"size":{"cols":"wide"}}})"},
           {"CloseStdin", R"({"process":"1"})"},
           {"List", R"(not json)"},
       }) {
    auto [status, body] = Unary(method, req);
    EXPECT_EQ(status, 400u) << method << " " << req;
    EXPECT_EQ(body["code"], "invalid_argument") << method << " " << req;
  }
}

TEST_F(ProcessServiceTest, PtyStartHasTheRequestedSize) {
  StreamReply r = Stream("Start", R"({"process":{"cmd":"/bin/sh","args":["-c","stty size; tty"]},
                                      "pty":{"size":{"cols":90,"rows":33}}})");
  std::string out = r.Output("pty");
  EXPECT_TRUE(out.starts_with("33 90\r\n/dev/pts/")) << out;
  EXPECT_EQ(r.Output("stdout"), "");
  EXPECT_EQ(r.End()["exitCode"], 0);
}

TEST_F(ProcessServiceTest, PtyUpdateAndInput) {
  StreamReply r;
  std::thread call([&] {
    r = Stream("Start", R"({"process":{"cmd":"/bin/sh","args":["-c","read x; stty size; echo $x"],
                            "envs":{"TERM":"xterm"}},"pty":{"size":{"cols":90,"rows":33}}})");
  });
  uint32_t pid = WaitForPid("read x; stty size; echo $x");
  ASSERT_NE(pid, 0u);
  std::string sel = R"({"process":{"pid":)" + std::to_string(pid) + "}";
  auto [ust, ures] = Unary("Update", sel + R"(,"pty":{"size":{"cols":70,"rows":22}}})");
  EXPECT_EQ(ust, 200u);
  auto [ist, ires] = Unary("SendInput", sel + R"(,"input":{"pty":")" + Base64Encode("typed\n") + R"("}})");
  EXPECT_EQ(ist, 200u);
  call.join();
  EXPECT_EQ(r.Output("pty"), "typed\r\n22 70\r\ntyped\r\n");
  EXPECT_EQ(r.End()["exitCode"], 0);
}

TEST_F(ProcessServiceTest, ClientLeavingDoesNotStopTheProcess) {
  uint32_t pid = 0;
  {
    net::io_context io;
    tcp::socket s = Connect(io);
    auto req = Request("/process.Process/Start", "application/connect+json",
                       http::connect::EncodeEnvelope(0, Sh("sleep 0.5; echo done")), {});
    bhttp::write(s, req);
    // Read until the start event has arrived, then hang up.
    std::string got;
    char buf[512];
    while (got.find("\"pid\"") == std::string::npos) {
      size_t n = s.read_some(net::buffer(buf));
      got.append(buf, n);
    }
  }
  pid = WaitForPid("sleep 0.5; echo done");
  ASSERT_NE(pid, 0u);
  StreamReply later = Stream("Connect", R"({"process":{"pid":)" + std::to_string(pid) + "}}");
  EXPECT_EQ(later.Output("stdout"), "done\n");
  EXPECT_EQ(later.End()["exitCode"], 0);
}

}  // namespace
}  // namespace kiln::envd
