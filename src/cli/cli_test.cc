// End-to-end tests of the CLI against an in-process fake that plays kilnd (control API) and,
// behind the same port, envd (routed by the E2b-Sandbox-Id header): what the CLI sent, what it
// printed, and its exit status.

#include "cli/cli.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <filesystem>
#include <gtest/gtest.h>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "base/encoding.h"
#include "base/unique_fd.h"
#include "http/connect.h"
#include "http/multipart.h"
#include "http/server.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;
namespace net = boost::asio;
using http::Exchange;
using http::Response;
using http::Task;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr char kApiKey[] = "e2b_testkey";
constexpr char kToken[] = "tok-123";

struct Recorded {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// --- frames and bodies the fake sends (outside coroutines: g++ 12 and braced json) ---

std::string EventFrame(const json& event) {
  json msg = json::object();
  msg["event"] = event;
  return http::connect::EncodeEnvelope(0, msg.dump());
}

std::string StartFrame(uint32_t pid) {
  json start = json::object();
  start["pid"] = pid;
  json ev = json::object();
  ev["start"] = start;
  return EventFrame(ev);
}

std::string DataFrame(const char* stream, std::string_view bytes) {
  json data = json::object();
  data[stream] = Base64Encode(bytes);
  json ev = json::object();
  ev["data"] = data;
  return EventFrame(ev);
}

std::string KeepaliveFrame() {
  json ev = json::object();
  ev["keepalive"] = json::object();
  return EventFrame(ev);
}

std::string EndFrame(int exit_code, bool exited, const std::string& status) {
  json end = json::object();
  end["exitCode"] = exit_code;
  end["exited"] = exited;
  end["status"] = status;
  if (exit_code != 0) end["error"] = status;
  json ev = json::object();
  ev["end"] = end;
  return EventFrame(ev);
}

std::string EndStreamFrame() { return http::connect::EncodeEnvelope(2, "{}"); }

std::string EndStreamError(const std::string& code, const std::string& message) {
  json err = json::object();
  err["code"] = code;
  err["message"] = message;
  json body = json::object();
  body["error"] = err;
  return http::connect::EncodeEnvelope(2, body.dump());
}

json ListedSandbox(const std::string& id, const std::string& started, const std::string& end,
                   const std::string& state, const std::map<std::string, std::string>& md) {
  json j = json::object();
  j["sandboxID"] = id;
  j["templateID"] = "base";
  j["alias"] = "base";
  j["clientID"] = "kiln";
  j["startedAt"] = started;
  j["endAt"] = end;
  j["state"] = state;
  j["cpuCount"] = 1;
  j["memoryMB"] = 512;
  j["diskSizeMB"] = 1024;
  j["envdVersion"] = "0.6.13";
  j["metadata"] = md;
  return j;
}

json FirstPage() {
  json page = json::array();
  page.push_back(ListedSandbox("sbx3", "2023-11-14T22:13:00Z", "2023-11-14T22:18:00Z", "running",
                               {{"owner", "me"}}));
  page.push_back(
      ListedSandbox("sbx2", "2023-11-14T21:00:00Z", "2023-11-14T23:00:00Z", "paused", {}));
  return page;
}

json SecondPage() {
  json page = json::array();
  page.push_back(ListedSandbox("sbx1", "2023-11-10T22:13:20Z", "2023-11-14T22:14:20Z", "running",
                               {{"b", "2"}, {"a", "1"}}));
  return page;
}

json SandboxDetail(const std::string& id, const std::string& state) {
  json j = ListedSandbox(id, "2023-11-14T22:08:20Z", "2023-11-14T22:18:20Z", state, {});
  j["envdAccessToken"] = kToken;
  j["allowInternetAccess"] = true;
  return j;
}

json CreatedSandbox() {
  json j = json::object();
  j["sandboxID"] = "sbx1";
  j["templateID"] = "base";
  j["clientID"] = "kiln";
  j["envdVersion"] = "0.6.13";
  j["envdAccessToken"] = kToken;
  return j;
}

json UploadAnswer(const std::string& path) {
  json entry = json::object();
  entry["name"] = fs::path(path).filename().string();
  entry["type"] = "file";
  entry["path"] = path;
  return json::array({entry});
}

json StatAnswer(const std::string& path, bool dir) {
  json entry = json::object();
  entry["name"] = fs::path(path).filename().string();
  entry["type"] = dir ? "FILE_TYPE_DIRECTORY" : "FILE_TYPE_FILE";
  entry["path"] = path;
  json out = json::object();
  out["entry"] = entry;
  return out;
}

std::string ConnectError(const std::string& code, const std::string& message) {
  json j = json::object();
  j["code"] = code;
  j["message"] = message;
  return j.dump();
}

// Collects the "file" part of a multipart upload.
class FilePartSink : public http::MultipartSink {
 public:
  Status OnPartBegin(const http::MultipartPart& part) override {
    in_file_ = part.name == "file";
    if (in_file_) filename = part.filename.value_or("");
    return {};
  }
  Status OnPartData(std::string_view data) override {
    if (in_file_) content.append(data);
    return {};
  }
  Status OnPartEnd() override { return {}; }
  std::string filename;
  std::string content;

 private:
  bool in_file_ = false;
};

// The download the fake serves at /data/big.bin: 3 MiB of a repeating pattern.
std::string BigFile() {
  std::string s(3 << 20, '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>((i * 7 + i / 4096) & 0xff);
  return s;
}

// kilnd + envd on 127.0.0.1:<port 0>, served from its own thread.
class FakeKilnd {
 public:
  FakeKilnd() : server_(io_, [this](Exchange& ex) { return Handle(ex); }, http::ServerOptions{}) {
    Status st = server_.Listen("127.0.0.1", 0);
    EXPECT_TRUE(st) << st.error().message();
    server_.Start();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~FakeKilnd() {
    io_.stop();
    thread_.join();
  }

  uint16_t port() const { return server_.port(); }

  std::vector<Recorded> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<Recorded> requests(const std::string& path) {
    std::vector<Recorded> out;
    for (auto& r : requests()) {
      if (r.path == path) out.push_back(r);
    }
    return out;
  }
  std::map<std::string, std::string> uploads() {
    std::lock_guard lock(mu_);
    return uploads_;
  }

 private:
  Task<void> Handle(Exchange& ex) {
    Recorded rec;
    const auto& head = ex.request();
    rec.method = std::string(http::beast::http::to_string(head.method));
    rec.path = head.path;
    for (const auto& [k, v] : head.query) rec.query[k] = v;
    for (const auto& f : head.headers) {
      std::string name(f.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      rec.headers[name] = std::string(f.value());
    }
    auto body = co_await ex.ReadBody(64 << 20);
    rec.body = body ? *body : "";
    {
      std::lock_guard lock(mu_);
      requests_.push_back(rec);
    }
    if (!rec.Header("e2b-sandbox-id").empty()) {
      co_await Envd(ex, rec);
    } else {
      co_await Api(ex, rec);
    }
  }

  Task<void> Api(Exchange& ex, const Recorded& rec) {
    if (rec.Header("x-api-key") != kApiKey) {
      co_return (void)co_await ex.Respond(Response::JsonError(401, "Invalid API key"));
    }
    if (rec.method == "POST" && rec.path == "/v2/sandboxes") {
      co_return (void)co_await ex.Respond(Response::Json(201, CreatedSandbox().dump()));
    }
    if (rec.method == "GET" && rec.path == "/v2/sandboxes") co_return co_await List(ex, rec);
    if ((rec.path == "/sandboxes/sbx1" || rec.path == "/sandboxes/zzz") && rec.method == "GET") {
      std::string id = rec.path.substr(11);
      co_return (void)co_await ex.Respond(
          Response::Json(200, SandboxDetail(id, id == "zzz" ? "paused" : "running").dump()));
    }
    if (rec.path == "/sandboxes/sbx1" && rec.method == "DELETE") {
      co_return (void)co_await ex.Respond(Response::Empty(204));
    }
    if (rec.path == "/sandboxes/sbx1/pause" && rec.method == "POST") {
      co_return (void)co_await ex.Respond(Response::JsonError(409, "sandbox sbx1 is already paused"));
    }
    std::string id = rec.path.substr(rec.path.rfind('/') + 1);
    co_await ex.Respond(Response::JsonError(404, "sandbox \"" + id + "\" not found"));
  }

  // Two pages: sbx3 and sbx2 (token "page2"), then sbx1.
  Task<void> List(Exchange& ex, const Recorded& rec) {
    bool first = rec.query.find("nextToken") == rec.query.end();
    Response r = Response::Json(200, (first ? FirstPage() : SecondPage()).dump());
    if (first) r.headers.set("X-Next-Token", "page2");
    co_await ex.Respond(std::move(r));
  }

  Task<void> Envd(Exchange& ex, const Recorded& rec) {
    if (rec.Header("e2b-sandbox-port") != "49983" || rec.Header("x-access-token") != kToken) {
      co_return (void)co_await ex.Respond(Response::JsonError(401, "unauthorized access"));
    }
    if (rec.path == "/process.Process/Start") co_return co_await Start(ex, rec);
    if (rec.path == "/process.Process/SendInput") {
      json j = json::parse(rec.body, nullptr, false);
      std::string b64 = j["input"].value("stdin", "");
      stdin_ += Base64Decode(b64).value_or("<bad base64>");
      co_return (void)co_await ex.Respond(Response::Json(200, "{}"));
    }
    if (rec.path == "/process.Process/CloseStdin") {
      stdin_closed_ = true;
      if (stdin_wait_) stdin_wait_->cancel();
      co_return (void)co_await ex.Respond(Response::Json(200, "{}"));
    }
    if (rec.path == "/filesystem.Filesystem/Stat") {
      json j = json::parse(rec.body, nullptr, false);
      std::string path = j.value("path", "");
      if (path == "/home/user/dir") {
        co_return (void)co_await ex.Respond(Response::Json(200, StatAnswer(path, true).dump()));
      }
      co_return (void)co_await ex.Respond(
          Response::Json(404, ConnectError("not_found", "no such file")));
    }
    if (rec.path == "/files" && rec.method == "POST") co_return co_await Upload(ex, rec);
    if (rec.path == "/files" && rec.method == "GET") co_return co_await Download(ex, rec);
    co_await ex.Respond(Response::JsonError(404, "no route " + rec.path));
  }

  Task<void> Start(Exchange& ex, const Recorded& rec) {
    auto env = http::connect::DecodeSingleEnvelope(rec.body);
    json req = env ? json::parse(env->payload, nullptr, false) : json();
    std::string script = req["process"]["args"].is_array() && req["process"]["args"].size() == 3
                             ? req["process"]["args"][2].get<std::string>()
                             : "";
    http::Fields headers;
    headers.set("Content-Type", "application/connect+json");
    co_await ex.StartStream(200, std::move(headers));
    co_await ex.WriteStream(StartFrame(42));
    if (req.value("stdin", false)) {
      // Plays `cat`: echoes stdin once the CLI closed it.
      net::steady_timer timer(co_await net::this_coro::executor);
      stdin_wait_ = &timer;
      timer.expires_after(10s);
      boost::system::error_code ec;
      if (!stdin_closed_) co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
      stdin_wait_ = nullptr;
      co_await ex.WriteStream(DataFrame("stdout", stdin_));
      co_await ex.WriteStream(EndFrame(stdin_closed_ ? 0 : 1, true, "exit status 0"));
    } else if (script == "killme") {
      co_await ex.WriteStream(EndFrame(-1, false, "signal: killed"));
    } else if (script == "slow") {
      co_await ex.WriteStream(EndStreamError("deadline_exceeded", "the process timed out"));
      co_return (void)co_await ex.FinishStream();
    } else {
      co_await ex.WriteStream(DataFrame("stdout", "hello\n"));
      co_await ex.WriteStream(DataFrame("stderr", "oops\n"));
      co_await ex.WriteStream(KeepaliveFrame());
      co_await ex.WriteStream(DataFrame("stdout", "bye\n"));
      co_await ex.WriteStream(EndFrame(3, true, "exit status 3"));
    }
    co_await ex.WriteStream(EndStreamFrame());
    co_await ex.FinishStream();
  }

  Task<void> Upload(Exchange& ex, const Recorded& rec) {
    auto boundary = http::MultipartBoundary(rec.Header("content-type"));
    if (!boundary) co_return (void)co_await ex.Respond(Response::JsonError(400, "not multipart"));
    FilePartSink sink;
    http::MultipartParser parser(*boundary, sink);
    Status st = parser.Feed(rec.body);
    if (st) st = parser.Finish();
    if (!st) co_return (void)co_await ex.Respond(Response::JsonError(400, st.error().message()));
    std::string path = rec.query.count("path") ? rec.query.at("path") : sink.filename;
    {
      std::lock_guard lock(mu_);
      uploads_[path] = sink.content;
    }
    co_await ex.Respond(Response::Json(200, UploadAnswer(path).dump()));
  }

  Task<void> Download(Exchange& ex, const Recorded& rec) {
    std::string path = rec.query.count("path") ? rec.query.at("path") : "";
    if (path != "/data/big.bin") {
      co_return (void)co_await ex.Respond(
          Response::JsonError(404, "path '" + path + "' does not exist"));
    }
    std::string data = BigFile();
    http::Fields headers;
    headers.set("Content-Type", "application/octet-stream");
    co_await ex.StartStream(200, std::move(headers), data.size());
    for (size_t off = 0; off < data.size(); off += 100000) {
      co_await ex.WriteStream(std::string_view(data).substr(off, 100000));
    }
    co_await ex.FinishStream();
  }

  net::io_context io_{1};
  http::Server server_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Recorded> requests_;
  std::map<std::string, std::string> uploads_;
  // Used on the server thread only.
  std::string stdin_;
  bool stdin_closed_ = false;
  net::steady_timer* stdin_wait_ = nullptr;
};

std::string ReadAll(int fd) {
  std::string out;
  char buf[65536];
  off_t off = 0;
  for (;;) {
    ssize_t n = pread(fd, buf, sizeof buf, off);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return out;
}

class CliTest : public ::testing::Test {
 protected:
  CliTest()
      : out_(memfd_create("out", MFD_CLOEXEC)),
        err_(memfd_create("err", MFD_CLOEXEC)),
        null_(open("/dev/null", O_RDONLY | O_CLOEXEC)) {
    char tmpl[] = "/tmp/kiln-cli-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~CliTest() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Runs `kiln args...` against the fake with stdin `in` (default /dev/null).
  int Kiln(std::vector<std::string> args, int in = -1) {
    Environment env;
    std::string url = "http://127.0.0.1:" + std::to_string(fake_.port());
    env.getenv = [url](const std::string& name) -> std::optional<std::string> {
      if (name == "E2B_API_URL") return url;
      if (name == "E2B_API_KEY") return std::string(kApiKey);
      return std::nullopt;
    };
    env.now = [] { return std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000)); };
    Io io{in >= 0 ? in : null_.get(), out_.get(), err_.get()};
    return cli::Run(args, io, env, LocalCommands{});
  }
  std::string Out() { return ReadAll(out_.get()); }
  std::string Err() { return ReadAll(err_.get()); }

  FakeKilnd fake_;
  UniqueFd out_, err_, null_;
  std::string dir_;
};

TEST_F(CliTest, CreateSendsTheRequestAndPrintsTheId) {
  EXPECT_EQ(Kiln({"sandbox", "create", "--timeout", "60", "--metadata", "owner=me", "--env",
                  "X=1", "--no-internet"}),
            0)
      << Err();
  EXPECT_EQ(Out(), "sbx1\n");
  auto reqs = fake_.requests("/v2/sandboxes");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "POST");
  EXPECT_EQ(reqs[0].Header("x-api-key"), kApiKey);
  EXPECT_EQ(json::parse(reqs[0].body),
            json::parse(R"({"templateID":"base","timeout":60,"metadata":{"owner":"me"},)"
                        R"("envVars":{"X":"1"},"allow_internet_access":false})"));
}

TEST_F(CliTest, CreateJsonPrintsTheWholeResponse) {
  EXPECT_EQ(Kiln({"sandbox", "create", "--json", "--template", "py"}), 0) << Err();
  EXPECT_EQ(json::parse(Out()), CreatedSandbox());
  EXPECT_EQ(json::parse(fake_.requests("/v2/sandboxes")[0].body),
            json::parse(R"({"templateID":"py"})"));
}

TEST_F(CliTest, ListFollowsPagesAndPrintsATable) {
  EXPECT_EQ(Kiln({"sandbox", "list", "--state", "running,paused", "--metadata", "k=v=1&x"}), 0)
      << Err();
  auto reqs = fake_.requests("/v2/sandboxes");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].query.count("nextToken"), 0u);
  EXPECT_EQ(reqs[1].query.at("nextToken"), "page2");
  EXPECT_EQ(reqs[0].query.at("state"), "running,paused");
  // As the SDK sends it (e2b-compat.md §2.5: metadata=k%3Dv%25253D1%252526x on the wire).
  EXPECT_EQ(reqs[0].query.at("metadata"), "k=v%253D1%2526x");
  EXPECT_EQ(Out(),
            "ID    TEMPLATE  STATE    STARTED  ENDS    METADATA\n"
            "sbx3  base      running  20s ago  in 4m   owner=me\n"
            "sbx2  base      paused   1h ago   in 46m  -\n"
            "sbx1  base      running  4d ago   in 1m   a=1,b=2\n");
}

TEST_F(CliTest, ListJsonIsOneArrayOfAllPages) {
  EXPECT_EQ(Kiln({"sandbox", "list", "--json"}), 0) << Err();
  json all = json::parse(Out());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[2]["sandboxID"], "sbx1");
}

TEST_F(CliTest, InfoShowsFieldsWithoutTheToken) {
  EXPECT_EQ(Kiln({"sandbox", "info", "sbx1"}), 0) << Err();
  std::string out = Out();
  EXPECT_NE(out.find("ID          sbx1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("State       running\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Internet    allowed\n"), std::string::npos) << out;
  EXPECT_EQ(out.find(kToken), std::string::npos);
}

TEST_F(CliTest, KillReportsUnknownIdsAndExitsOne) {
  EXPECT_EQ(Kiln({"sandbox", "kill", "sbx1", "nope"}), 1);
  EXPECT_EQ(Err(), "kiln: 404: sandbox \"nope\" not found\n");
  auto reqs = fake_.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].method, "DELETE");
  EXPECT_EQ(reqs[0].path, "/sandboxes/sbx1");
  EXPECT_EQ(reqs[1].path, "/sandboxes/nope");
}

TEST_F(CliTest, ApiErrorsArePrintedWithTheirStatus) {
  EXPECT_EQ(Kiln({"sandbox", "pause", "sbx1"}), 1);
  EXPECT_EQ(Err(), "kiln: 409: sandbox sbx1 is already paused\n");
}

TEST_F(CliTest, MissingApiKeyGetsAHint) {
  Environment env;
  std::string url = "http://127.0.0.1:" + std::to_string(fake_.port());
  env.getenv = [url](const std::string& name) -> std::optional<std::string> {
    if (name == "E2B_API_URL") return url;
    return std::nullopt;
  };
  EXPECT_EQ(cli::Run({"sandbox", "list"}, Io{null_.get(), out_.get(), err_.get()}, env, {}), 1);
  EXPECT_NE(Err().find("kiln: 401: Invalid API key (set E2B_API_KEY"), std::string::npos);
}

TEST_F(CliTest, UnreachableKilndIsExplained) {
  // A port nothing listens on: bound, then closed.
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  close(s);
  std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  EXPECT_EQ(Kiln({"--api-url", url, "sandbox", "list"}), 1);
  std::string err = Err();
  EXPECT_NE(err.find("kiln: cannot reach kilnd at " + url), std::string::npos) << err;
  EXPECT_NE(err.find("kiln up"), std::string::npos) << err;
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Kiln({"sandbox", "create", "--bogus"}), 2);
  std::string err = Err();
  EXPECT_TRUE(err.starts_with("kiln: unknown flag --bogus\n\nusage: kiln sandbox create")) << err;
  EXPECT_TRUE(fake_.requests().empty());
  EXPECT_EQ(Kiln({"--help"}), 0);
  EXPECT_TRUE(Out().starts_with("usage: kiln "));
}

TEST_F(CliTest, ExecStreamsOutputAndExitsWithTheCommandsStatus) {
  EXPECT_EQ(Kiln({"sandbox", "exec", "sbx1", "--user", "root", "--cwd", "/tmp", "--env", "A=1",
                  "--", "echo hi"}),
            3);
  EXPECT_EQ(Out(), "hello\nbye\n");
  EXPECT_EQ(Err(), "oops\n");
  auto starts = fake_.requests("/process.Process/Start");
  ASSERT_EQ(starts.size(), 1u);
  const Recorded& s = starts[0];
  EXPECT_EQ(s.Header("e2b-sandbox-id"), "sbx1");
  EXPECT_EQ(s.Header("e2b-sandbox-port"), "49983");
  EXPECT_EQ(s.Header("x-access-token"), kToken);
  EXPECT_EQ(s.Header("authorization"), "Basic " + Base64Encode("root:"));
  EXPECT_EQ(s.Header("content-type"), "application/connect+json");
  EXPECT_EQ(s.Header("connect-protocol-version"), "1");
  EXPECT_EQ(s.Header("keepalive-ping-interval"), "50");
  EXPECT_EQ(s.Header("connect-timeout-ms"), "");  // the command may run as long as it likes
  EXPECT_EQ(s.Header("x-api-key"), "");           // the API key stays with the control API
  auto env = http::connect::DecodeSingleEnvelope(s.body);
  ASSERT_TRUE(env);
  EXPECT_EQ(json::parse(env->payload),
            json::parse(R"({"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"],)"
                        R"("envs":{"A":"1"},"cwd":"/tmp"},"stdin":false})"));
  // The token came from GET /sandboxes/sbx1.
  EXPECT_EQ(fake_.requests("/sandboxes/sbx1").size(), 1u);
}

TEST_F(CliTest, ExecMapsSignalsAndTimeouts) {
  EXPECT_EQ(Kiln({"sandbox", "exec", "sbx1", "killme"}), 137);
  EXPECT_EQ(Kiln({"sandbox", "exec", "sbx1", "--timeout", "5", "slow"}), 124);
  EXPECT_NE(Err().find("kiln: deadline_exceeded: the process timed out"), std::string::npos);
  auto starts = fake_.requests("/process.Process/Start");
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[1].Header("connect-timeout-ms"), "5000");
}

TEST_F(CliTest, ExecQuotesSeveralWords) {
  EXPECT_EQ(Kiln({"sandbox", "exec", "sbx1", "printf", "%s\\n", "a b"}), 3);
  auto env = http::connect::DecodeSingleEnvelope(fake_.requests("/process.Process/Start")[0].body);
  EXPECT_EQ(json::parse(env->payload)["process"]["args"][2], "printf '%s\\n' 'a b'");
}

TEST_F(CliTest, ExecForwardsStdinFromAFile) {
  UniqueFd in(memfd_create("in", MFD_CLOEXEC));
  std::string data = "line 1\nline 2\n";
  ASSERT_EQ(write(in.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
  lseek(in.get(), 0, SEEK_SET);
  EXPECT_EQ(Kiln({"sandbox", "exec", "sbx1", "cat"}, in.get()), 0) << Err();
  EXPECT_EQ(Out(), data);
  auto env = http::connect::DecodeSingleEnvelope(fake_.requests("/process.Process/Start")[0].body);
  EXPECT_EQ(json::parse(env->payload)["stdin"], true);
  auto inputs = fake_.requests("/process.Process/SendInput");
  ASSERT_EQ(inputs.size(), 1u);
  EXPECT_EQ(json::parse(inputs[0].body),
            json::parse(R"({"process":{"pid":42},"input":{"stdin":")" + Base64Encode(data) +
                        R"("}})"));
  auto closes = fake_.requests("/process.Process/CloseStdin");
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_EQ(json::parse(closes[0].body), json::parse(R"({"process":{"pid":42}})"));
}

TEST_F(CliTest, ExecForwardsStdinFromAPipeAndRestoresItsFlags) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  std::string data(100000, 'x');
  std::thread writer([&] {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = write(w.get(), data.data() + off, data.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    w.reset();
  });
  int flags_before = fcntl(r.get(), F_GETFL);
  int status = Kiln({"sandbox", "exec", "sbx1", "cat"}, r.get());
  writer.join();
  EXPECT_EQ(status, 0) << Err();
  EXPECT_EQ(Out(), data);
  EXPECT_EQ(fcntl(r.get(), F_GETFL), flags_before);
  EXPECT_EQ(fake_.requests("/process.Process/CloseStdin").size(), 1u);
}

TEST_F(CliTest, ExecOfAPausedSandboxSaysHowToResume) {
  EXPECT_EQ(Kiln({"sandbox", "exec", "zzz", "true"}), 1);
  EXPECT_NE(Err().find("kiln: sandbox zzz is paused; resume it with `kiln sandbox resume zzz`"),
            std::string::npos);
}

TEST_F(CliTest, SandboxIdsAreCheckedBeforeTheyBecomeHeaders) {
  EXPECT_EQ(Kiln({"sandbox", "exec", "sbx1\r\nX-Evil: 1", "true"}), 1);
  EXPECT_NE(Err().find("kiln: invalid sandbox ID"), std::string::npos);
  EXPECT_TRUE(fake_.requests().empty());
}

TEST_F(CliTest, CopyUploadsAFileAsMultipart) {
  std::string local = dir_ + "/up.bin";
  std::string data;
  std::mt19937 rng(7);
  for (int i = 0; i < 300000; ++i) data += static_cast<char>(rng());
  {
    UniqueFd f(open(local.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_EQ(write(f.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
  }
  EXPECT_EQ(Kiln({"sandbox", "cp", "--user", "root", local, "sbx1:/home/user/up.bin"}), 0) << Err();
  EXPECT_EQ(fake_.uploads().at("/home/user/up.bin"), data);
  auto posts = fake_.requests("/files");
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].query.at("path"), "/home/user/up.bin");
  EXPECT_EQ(posts[0].query.at("username"), "root");
  EXPECT_EQ(posts[0].Header("x-access-token"), kToken);
  EXPECT_EQ(posts[0].Header("transfer-encoding"), "");  // size known: Content-Length
  EXPECT_TRUE(posts[0].Header("content-type").starts_with("multipart/form-data; boundary=kiln-"));
}

TEST_F(CliTest, CopyIntoARemoteDirectoryKeepsTheFileName) {
  std::string local = dir_ + "/notes.txt";
  {
    UniqueFd f(open(local.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_EQ(write(f.get(), "hi", 2), 2);
  }
  EXPECT_EQ(Kiln({"sandbox", "cp", local, "sbx1:/home/user/dir"}), 0) << Err();
  EXPECT_EQ(fake_.uploads().at("/home/user/dir/notes.txt"), "hi");
}

TEST_F(CliTest, CopyUploadsStdinChunked) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  ASSERT_EQ(write(w.get(), "from a pipe", 11), 11);
  w.reset();
  EXPECT_EQ(Kiln({"sandbox", "cp", "-", "sbx1:/tmp/p.txt"}, r.get()), 0) << Err();
  EXPECT_EQ(fake_.uploads().at("/tmp/p.txt"), "from a pipe");
  EXPECT_EQ(fake_.requests("/files")[0].Header("transfer-encoding"), "chunked");
}

TEST_F(CliTest, CopyDownloadsIntoADirectory) {
  EXPECT_EQ(Kiln({"sandbox", "cp", "sbx1:/data/big.bin", dir_}), 0) << Err();
  std::string got;
  {
    UniqueFd f(open((dir_ + "/big.bin").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(f);
    got = ReadAll(f.get());
  }
  EXPECT_TRUE(got == BigFile()) << "downloaded " << got.size() << " bytes";
  auto gets = fake_.requests("/files");
  ASSERT_EQ(gets.size(), 1u);
  EXPECT_EQ(gets[0].method, "GET");
  EXPECT_EQ(gets[0].query.at("path"), "/data/big.bin");
  EXPECT_EQ(gets[0].query.count("username"), 0u);
}

TEST_F(CliTest, CopyDownloadOfAMissingFileLeavesNothingBehind) {
  EXPECT_EQ(Kiln({"sandbox", "cp", "sbx1:/missing", dir_ + "/x"}), 1);
  EXPECT_EQ(Err(), "kiln: 404: path '/missing' does not exist\n");
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(CliTest, CopyNeedsExactlyOneRemoteSide) {
  EXPECT_EQ(Kiln({"sandbox", "cp", "/a", "/b"}), 1);
  EXPECT_NE(Err().find("one side of cp must be ID:PATH"), std::string::npos);
}

}  // namespace
}  // namespace kiln::cli
