#include "envd/control_routes.h"

#include <stdlib.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/encoding.h"
#include "envd/agent.h"

namespace kiln::envd {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using boost::system::error_code;
using http::Verb;
using nlohmann::json;
using tcp = net::ip::tcp;

constexpr std::string_view kUnauthorizedBody =
    R"({"code":401,"message":"unauthorized access, please provide a valid access token or method signing if supported"})";

// The whole agent (all services, the token filter) served on 127.0.0.1:0 by a background
// io_context thread, with accounts from a temporary root.
class ControlRoutesTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-control-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    std::filesystem::create_directories(root_ + "/etc");
    std::ofstream(root_ + "/etc/passwd") << "root:x:0:0:root:/root:/bin/bash\n"
                                            "user:x:1000:1000::/home/user:/bin/bash\n";
    std::ofstream(root_ + "/etc/group") << "root:x:0:\nuser:x:1000:\n";
    AgentState initial;
    initial.users = sys::UserDb(root_);
    agent_ = std::make_unique<Agent>(io_, std::move(initial));
    server_ = std::make_unique<http::Server>(io_, agent_->router(), http::ServerOptions{});
    Status st = server_->Listen("127.0.0.1", 0);
    ASSERT_TRUE(st) << st.error().message();
    server_->Start();
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    io_.stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    agent_.reset();
    std::filesystem::remove_all(root_);
  }

  // One request on a fresh connection; reads time out after 5 s.
  bhttp::response<bhttp::string_body> Call(Verb method, std::string target,
                                           std::string body = {}, std::string token = {}) {
    net::io_context io;
    tcp::socket s(io);
    s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server_->port()));
    timeval tv{5, 0};
    setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
    if (!token.empty()) req.set("X-Access-Token", token);
    req.body() = std::move(body);
    req.prepare_payload();
    error_code ec;
    bhttp::write(s, req, ec);
    EXPECT_FALSE(ec) << ec.message();
    beast::flat_buffer buf;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(s, buf, res, ec);
    EXPECT_FALSE(ec) << ec.message();
    return res;
  }

  // Reads agent state; safe because the io thread is idle between requests and the
  // response round trip orders the handler's writes before this read.
  AgentState& state() { return agent_->state(); }

  std::string root_;
  net::io_context io_{1};
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

TEST_F(ControlRoutesTest, HealthIs204WithoutBody) {
  auto res = Call(Verb::get, "/health");
  EXPECT_EQ(res.result_int(), 204);
  EXPECT_TRUE(res.body().empty());
}

TEST_F(ControlRoutesTest, InitSetsEnvUserWorkdirAndToken) {
  auto res = Call(Verb::post, "/init",
                  R"({"envVars":{"A":"1","B":"two words"},"defaultUser":"user",)"
                  R"("defaultWorkdir":"/home/user/work","accessToken":"tok-123"})");
  EXPECT_EQ(res.result_int(), 204);
  EXPECT_EQ(res["X-Envd-Version"], kEnvdVersion);
  EXPECT_EQ(state().default_user, "user");
  EXPECT_EQ(state().default_workdir, "/home/user/work");
  EXPECT_EQ(state().access_token, "tok-123");
  auto envs = Call(Verb::get, "/envs", {}, "tok-123");
  EXPECT_EQ(envs.result_int(), 200);
  EXPECT_EQ(envs[bhttp::field::content_type], "application/json");
  EXPECT_EQ(json::parse(envs.body()), json({{"A", "1"}, {"B", "two words"}}));
}

TEST_F(ControlRoutesTest, InitAcceptsSnakeCaseAndEmptyBody) {
  EXPECT_EQ(Call(Verb::post, "/init").result_int(), 204);
  EXPECT_EQ(Call(Verb::post, "/init", R"({"env_vars":{"X":"y"},"default_user":"user"})")
                .result_int(),
            204);
  EXPECT_EQ(state().default_user, "user");
  EXPECT_EQ(state().env_vars.at("X"), "y");
}

TEST_F(ControlRoutesTest, InitMergesEnvVars) {
  Call(Verb::post, "/init", R"({"envVars":{"A":"1"}})");
  Call(Verb::post, "/init", R"({"envVars":{"B":"2","A":"3"}})");
  EXPECT_EQ(json::parse(Call(Verb::get, "/envs").body()), json({{"A", "3"}, {"B", "2"}}));
}

TEST_F(ControlRoutesTest, TokenGuardsInitWithExact401Body) {
  ASSERT_EQ(Call(Verb::post, "/init", R"({"accessToken":"secret"})").result_int(), 204);
  auto none = Call(Verb::post, "/init", R"({"defaultUser":"user"})");
  EXPECT_EQ(none.result_int(), 401);
  EXPECT_EQ(none.body(), kUnauthorizedBody);
  EXPECT_EQ(none[bhttp::field::content_type], "application/json");
  auto wrong = Call(Verb::post, "/init", R"({"defaultUser":"user"})", "secreT");
  EXPECT_EQ(wrong.result_int(), 401);
  EXPECT_EQ(wrong.body(), kUnauthorizedBody);
  EXPECT_EQ(state().default_user, "root");
  EXPECT_EQ(Call(Verb::post, "/init", R"({"defaultUser":"user"})", "secret").result_int(), 204);
  EXPECT_EQ(state().default_user, "user");
}

TEST_F(ControlRoutesTest, TokenGuardsOtherRoutesButNotHealth) {
  ASSERT_EQ(Call(Verb::post, "/init", R"({"accessToken":"secret"})").result_int(), 204);
  for (const char* path : {"/envs", "/metrics"}) {
    auto res = Call(Verb::get, path);
    EXPECT_EQ(res.result_int(), 401) << path;
    EXPECT_EQ(res.body(), kUnauthorizedBody) << path;
    EXPECT_EQ(Call(Verb::get, path, {}, "wrong").result_int(), 401) << path;
    EXPECT_EQ(Call(Verb::get, path, {}, "secret").result_int(), 200) << path;
  }
  EXPECT_EQ(Call(Verb::get, "/health").result_int(), 204);
}

TEST_F(ControlRoutesTest, EmptyTokenClearsIt) {
  ASSERT_EQ(Call(Verb::post, "/init", R"({"accessToken":"secret"})").result_int(), 204);
  ASSERT_EQ(Call(Verb::post, "/init", R"({"accessToken":""})", "secret").result_int(), 204);
  EXPECT_FALSE(state().access_token.has_value());
  EXPECT_EQ(Call(Verb::get, "/envs").result_int(), 200);
}

TEST_F(ControlRoutesTest, InitRejectsUnknownDefaultUser) {
  auto res = Call(Verb::post, "/init", R"({"defaultUser":"ghost"})");
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_EQ(json::parse(res.body())["code"], 400);
  EXPECT_EQ(state().default_user, "root");
}

TEST_F(ControlRoutesTest, InitRejectsMalformedBodies) {
  for (const char* body : {"{nope", "[1]", R"({"envVars":{"A":1}})", R"({"accessToken":5})",
                           R"({"defaultUser":true})", R"({"defaultWorkdir":[]})",
                           R"({"timestamp":"yesterday"})"}) {
    auto res = Call(Verb::post, "/init", body);
    EXPECT_EQ(res.result_int(), 400) << body;
    EXPECT_EQ(json::parse(res.body(), nullptr, false)["code"], 400) << body;
  }
}

TEST_F(ControlRoutesTest, InitWithPastTimestampLeavesClockAlone) {
  // Only a timestamp well in the past: a future one would set this machine's clock.
  auto res = Call(Verb::post, "/init", R"({"timestamp":"2020-01-01T00:00:00.5+02:00"})");
  EXPECT_EQ(res.result_int(), 204);
}

// Real random bytes: as root these tests credit this machine's kernel RNG with them.
std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  EXPECT_EQ(getrandom(out.data(), n, 0), static_cast<ssize_t>(n));
  return out;
}

TEST(InitEntropyTest, DecodesBase64OfTheAllowedSizes) {
  EXPECT_EQ(DecodeInitEntropy(Base64Encode(std::string(32, 'a'))), std::string(32, 'a'));
  EXPECT_EQ(DecodeInitEntropy(Base64Encode(std::string(512, '\xff'))), std::string(512, '\xff'));
  EXPECT_EQ(DecodeInitEntropy(Base64EncodeNoPad(std::string(40, 'z'))), std::string(40, 'z'));
  EXPECT_FALSE(DecodeInitEntropy(Base64Encode(std::string(31, 'a'))));
  EXPECT_FALSE(DecodeInitEntropy(Base64Encode(std::string(513, 'a'))));
  EXPECT_FALSE(DecodeInitEntropy(""));
  EXPECT_FALSE(DecodeInitEntropy("not base64 at all, not base64 at all, not base64!!"));
  EXPECT_FALSE(DecodeInitEntropy(Base64Encode(std::string(32, 'a')) + "\n"));
}

TEST_F(ControlRoutesTest, InitTakesEntropy) {
  // As root on this host the ioctls succeed; elsewhere (no CAP_SYS_ADMIN) EPERM is only
  // logged. Either way: 204, and the rest of the body still applies.
  for (size_t n : {size_t{32}, size_t{512}}) {
    json body = {{"entropy", Base64Encode(RandomBytes(n))}, {"envVars", {{"E", "1"}}}};
    auto res = Call(Verb::post, "/init", body.dump());
    EXPECT_EQ(res.result_int(), 204) << n << ": " << res.body();
  }
  EXPECT_EQ(state().env_vars.at("E"), "1");
}

TEST_F(ControlRoutesTest, InitRejectsBadEntropyAndChangesNothing) {
  for (const json& bad : {json("%%%%"), json(Base64Encode(RandomBytes(31))),
                          json(Base64Encode(RandomBytes(513))), json(7), json::array()}) {
    json body = {{"entropy", bad}, {"defaultUser", "user"}};
    auto res = Call(Verb::post, "/init", body.dump());
    EXPECT_EQ(res.result_int(), 400) << bad.dump();
    EXPECT_EQ(json::parse(res.body(), nullptr, false)["code"], 400) << bad.dump();
  }
  EXPECT_EQ(state().default_user, "root");
}

TEST_F(ControlRoutesTest, MetricsHasUpstreamShape) {
  auto res = Call(Verb::get, "/metrics");
  ASSERT_EQ(res.result_int(), 200);
  EXPECT_EQ(res[bhttp::field::content_type], "application/json");
  json m = json::parse(res.body());
  for (const char* key : {"ts", "cpu_count", "mem_total", "mem_used", "mem_cache",
                          "mem_total_mib", "mem_used_mib", "disk_used", "disk_total"}) {
    ASSERT_TRUE(m.contains(key)) << key;
    EXPECT_TRUE(m[key].is_number_integer()) << key;
  }
  ASSERT_TRUE(m.contains("cpu_used_pct"));
  EXPECT_TRUE(m["cpu_used_pct"].is_number());
  EXPECT_GE(m["cpu_count"].get<int64_t>(), 1);
  EXPECT_GT(m["mem_total"].get<int64_t>(), 0);
  EXPECT_LE(m["mem_used"].get<int64_t>(), m["mem_total"].get<int64_t>());
  EXPECT_EQ(m["mem_total_mib"].get<int64_t>(), m["mem_total"].get<int64_t>() >> 20);
  EXPECT_LE(m["disk_used"].get<int64_t>(), m["disk_total"].get<int64_t>());
  EXPECT_GE(m["cpu_used_pct"].get<double>(), 0.0);
  EXPECT_LE(m["cpu_used_pct"].get<double>(), 100.0);
}

}  // namespace
}  // namespace kiln::envd
