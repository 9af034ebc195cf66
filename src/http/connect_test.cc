#include "http/connect.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <gtest/gtest.h>
#include <string>
#include <thread>
#include <vector>

namespace kiln::http::connect {
namespace {

namespace bhttp = beast::http;
using boost::system::error_code;
using nlohmann::json;
using namespace std::string_literals;

// --- Envelopes ---------------------------------------------------------------------------

TEST(EnvelopeTest, EncodesFlagsAndBigEndianLength) {
  std::string e = EncodeEnvelope(kFlagEndStream, std::string(0x010203, 'x'));
  ASSERT_EQ(e.size(), 5u + 0x010203);
  EXPECT_EQ(e.substr(0, 5), "\x02\x00\x01\x02\x03"s);
  EXPECT_EQ(EncodeEnvelope(0, "{}"), "\x00\x00\x00\x00\x02{}"s);
}

TEST(EnvelopeTest, DecodesWhatItEncodes) {
  auto env = DecodeSingleEnvelope(EncodeEnvelope(0, R"({"a":1})"));
  ASSERT_TRUE(env) << env.error().message();
  EXPECT_EQ(env->flags, 0);
  EXPECT_EQ(env->payload, R"({"a":1})");
}

TEST(EnvelopeTest, DecodesEmptyPayload) {
  auto env = DecodeSingleEnvelope("\x00\x00\x00\x00\x00"s);
  ASSERT_TRUE(env);
  EXPECT_EQ(env->payload, "");
}

TEST(EnvelopeTest, RejectsTruncatedPrefix) {
  for (std::string body : {""s, "\x00"s, "\x00\x00\x00\x00"s}) {
    auto env = DecodeSingleEnvelope(body);
    ASSERT_FALSE(env);
    EXPECT_EQ(env.error().code(), Errc::kInvalidArgument);
  }
}

TEST(EnvelopeTest, RejectsLengthLongerThanBody) {
  auto env = DecodeSingleEnvelope("\x00\x00\x00\x00\x09{}"s);
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().code(), Errc::kInvalidArgument);
  EXPECT_NE(env.error().message().find("length 9"), std::string::npos);
}

TEST(EnvelopeTest, RejectsTrailingBytesAfterTheMessage) {
  std::string two = EncodeEnvelope(0, "{}") + EncodeEnvelope(0, "{}");
  auto env = DecodeSingleEnvelope(two);
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().code(), Errc::kInvalidArgument);
}

TEST(EnvelopeTest, RejectsHugeDeclaredLength) {
  auto env = DecodeSingleEnvelope("\x00\xff\xff\xff\xff{}"s);
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().code(), Errc::kInvalidArgument);
}

TEST(EnvelopeTest, RejectsCompressedMessage) {
  auto env = DecodeSingleEnvelope(EncodeEnvelope(kFlagCompressed, "xx"));
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().code(), Errc::kUnimplemented);
}

TEST(EnvelopeTest, RejectsEndStreamFlagInRequest) {
  auto env = DecodeSingleEnvelope(EncodeEnvelope(kFlagEndStream, "{}"));
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().code(), Errc::kInvalidArgument);
}

// --- Codes -------------------------------------------------------------------------------

struct CodeCase {
  Code code;
  std::string_view name;
  unsigned status;
};

class CodeTest : public testing::TestWithParam<CodeCase> {};

TEST_P(CodeTest, NameAndStatusMatchConnectSpec) {
  const CodeCase& c = GetParam();
  EXPECT_EQ(CodeName(c.code), c.name);
  EXPECT_EQ(CodeFromName(c.name), c.code);
  EXPECT_EQ(HttpStatus(c.code), c.status) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    All, CodeTest,
    testing::Values(CodeCase{Code::kCanceled, "canceled", 499},
                    CodeCase{Code::kUnknown, "unknown", 500},
                    CodeCase{Code::kInvalidArgument, "invalid_argument", 400},
                    CodeCase{Code::kDeadlineExceeded, "deadline_exceeded", 504},
                    CodeCase{Code::kNotFound, "not_found", 404},
                    CodeCase{Code::kAlreadyExists, "already_exists", 409},
                    CodeCase{Code::kPermissionDenied, "permission_denied", 403},
                    CodeCase{Code::kResourceExhausted, "resource_exhausted", 429},
                    CodeCase{Code::kFailedPrecondition, "failed_precondition", 400},
                    CodeCase{Code::kAborted, "aborted", 409},
                    CodeCase{Code::kOutOfRange, "out_of_range", 400},
                    CodeCase{Code::kUnimplemented, "unimplemented", 501},
                    CodeCase{Code::kInternal, "internal", 500},
                    CodeCase{Code::kUnavailable, "unavailable", 503},
                    CodeCase{Code::kDataLoss, "data_loss", 500},
                    CodeCase{Code::kUnauthenticated, "unauthenticated", 401}));

TEST(CodeNameTest, UnknownNameIsNullopt) {
  EXPECT_EQ(CodeFromName("NOT_FOUND"), std::nullopt);
  EXPECT_EQ(CodeFromName(""), std::nullopt);
}

TEST(CodeNameTest, MapsEveryErrc) {
  EXPECT_EQ(FromErrc(Errc::kInvalidArgument), Code::kInvalidArgument);
  EXPECT_EQ(FromErrc(Errc::kNotFound), Code::kNotFound);
  EXPECT_EQ(FromErrc(Errc::kAlreadyExists), Code::kAlreadyExists);
  EXPECT_EQ(FromErrc(Errc::kPermissionDenied), Code::kPermissionDenied);
  EXPECT_EQ(FromErrc(Errc::kUnauthenticated), Code::kUnauthenticated);
  EXPECT_EQ(FromErrc(Errc::kResourceExhausted), Code::kResourceExhausted);
  EXPECT_EQ(FromErrc(Errc::kFailedPrecondition), Code::kFailedPrecondition);
  EXPECT_EQ(FromErrc(Errc::kUnavailable), Code::kUnavailable);
  EXPECT_EQ(FromErrc(Errc::kTimeout), Code::kDeadlineExceeded);
  EXPECT_EQ(FromErrc(Errc::kCanceled), Code::kCanceled);
  EXPECT_EQ(FromErrc(Errc::kUnimplemented), Code::kUnimplemented);
  EXPECT_EQ(FromErrc(Errc::kInternal), Code::kInternal);
}

TEST(CodeNameTest, ErrorJsonUsesWireName) {
  EXPECT_EQ(ErrorJson(Error(Errc::kNotFound, "process with pid 7 not found")),
            json({{"code", "not_found"}, {"message", "process with pid 7 not found"}}));
}

// --- Connect-Timeout-Ms ------------------------------------------------------------------

TEST(TimeoutTest, AbsentHeaderMeansNoDeadline) {
  auto t = ParseTimeout("");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, std::nullopt);
}

TEST(TimeoutTest, ParsesMilliseconds) {
  auto t = ParseTimeout("60000");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, std::chrono::milliseconds(60000));
  auto max = ParseTimeout("9999999999");
  ASSERT_TRUE(max);
  EXPECT_EQ(*max, std::chrono::milliseconds(9999999999));
}

TEST(TimeoutTest, RejectsMalformedValues) {
  for (std::string_view bad : {"abc", "-1", "+5", "1.5", "12ms", " 12", "12 ", "0x10",
                               "12345678901"}) {
    auto t = ParseTimeout(bad);
    ASSERT_FALSE(t) << bad;
    EXPECT_EQ(t.error().code(), Errc::kInvalidArgument) << bad;
  }
}

TEST(DumpTest, ReplacesInvalidUtf8InsteadOfThrowing) {
  json j = {{"s", "ok\xff"}};
  EXPECT_EQ(Dump(j), "{\"s\":\"ok\xef\xbf\xbd\"}");
}

// --- Over HTTP ---------------------------------------------------------------------------

class ServerThread {
 public:
  explicit ServerThread(const Router& router) : server_(io_, router, ServerOptions{}) {
    Status st = server_.Listen("127.0.0.1", 0);
    EXPECT_TRUE(st) << st.error().message();
    server_.Start();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~ServerThread() {
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return server_.port(); }

 private:
  net::io_context io_{1};
  Server server_;
  std::thread thread_;
};

struct Reply {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

// One POST on a fresh connection; reads time out after 5 s.
Reply Post(uint16_t port, std::string path, std::string content_type, std::string body,
           Fields extra = {}) {
  net::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  timeval tv{5, 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  bhttp::request<bhttp::string_body> req{bhttp::verb::post, path, 11};
  req.set(bhttp::field::host, "127.0.0.1");
  if (!content_type.empty()) req.set(bhttp::field::content_type, content_type);
  for (const auto& f : extra) req.set(f.name_string(), f.value());
  req.body() = std::move(body);
  req.prepare_payload();
  error_code ec;
  bhttp::write(s, req, ec);
  EXPECT_FALSE(ec) << ec.message();
  beast::flat_buffer buf;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(s, buf, res, ec);
  EXPECT_FALSE(ec) << ec.message();
  return {res.result_int(), std::string(res[bhttp::field::content_type]), res.body()};
}

// Splits a streaming response body into its envelopes; a trailing partial frame fails.
std::vector<Envelope> Frames(std::string_view body) {
  std::vector<Envelope> out;
  while (!body.empty()) {
    EXPECT_GE(body.size(), 5u);
    if (body.size() < 5) break;
    auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(body[i])); };
    uint32_t len = (b(1) << 24) | (b(2) << 16) | (b(3) << 8) | b(4);
    EXPECT_LE(len, body.size() - 5);
    if (len > body.size() - 5) break;
    out.push_back({static_cast<uint8_t>(b(0)), std::string(body.substr(5, len))});
    body.remove_prefix(5 + len);
  }
  return out;
}

json Parse(const std::string& s) { return json::parse(s, nullptr, false); }

json EchoReply(const CallContext& ctx, const json& req) {
  return json{{"got", req}, {"hasDeadline", ctx.deadline.has_value()}};
}

json Counter(int i) { return json{{"n", i}}; }

class ConnectRouteTest : public testing::Test {
 protected:
  ConnectRouteTest() {
    AddUnary(router_, "/test.Svc/Echo",
             [](const CallContext& ctx, const json& req) -> Task<Result<json>> {
               co_return EchoReply(ctx, req);
             });
    AddUnary(router_, "/test.Svc/Missing",
             [](const CallContext&, const json&) -> Task<Result<json>> {
               co_return Fail(Errc::kNotFound, "no such thing");
             });
    AddServerStream(router_, "/test.Svc/FailFirst",
                    [](const CallContext&, const json&, ServerStream&) -> Task<Status> {
                      co_return Fail(Errc::kNotFound, "process with pid 42 not found");
                    });
    AddServerStream(router_, "/test.Svc/Count",
                    [](const CallContext&, const json& req, ServerStream& s) -> Task<Status> {
                      int n = req.value("n", 0);
                      for (int i = 0; i < n; ++i) KILN_CO_TRY(co_await s.Send(Counter(i)));
                      co_return Status();
                    });
    AddServerStream(router_, "/test.Svc/FailLate",
                    [](const CallContext&, const json&, ServerStream& s) -> Task<Status> {
                      KILN_CO_TRY(co_await s.Send(Counter(0)));
                      co_return Fail(Errc::kTimeout, "took too long");
                    });
  }

  Router router_;
};

TEST_F(ConnectRouteTest, UnaryEchoesRequest) {
  ServerThread server(router_);
  Reply r = Post(server.port(), "/test.Svc/Echo", "application/json", R"({"a":[1,2]})");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(Parse(r.body), json({{"got", {{"a", {1, 2}}}}, {"hasDeadline", false}}));
}

TEST_F(ConnectRouteTest, UnaryAcceptsCharsetAndEmptyBody) {
  ServerThread server(router_);
  Reply r = Post(server.port(), "/test.Svc/Echo", "Application/JSON; charset=utf-8", "");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(Parse(r.body)["got"], json::object());
}

TEST_F(ConnectRouteTest, UnaryWrongContentTypeIs415) {
  ServerThread server(router_);
  for (std::string ct : {"text/plain", "application/proto", "application/jsonx", ""}) {
    Reply r = Post(server.port(), "/test.Svc/Echo", ct, "{}");
    EXPECT_EQ(r.status, 415u) << ct;
    EXPECT_EQ(Parse(r.body)["code"], "unimplemented") << ct;
  }
}

TEST_F(ConnectRouteTest, UnaryInvalidJsonIs400InvalidArgument) {
  ServerThread server(router_);
  Reply r = Post(server.port(), "/test.Svc/Echo", "application/json", "{not json");
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(r.content_type, "application/json");
  json body = Parse(r.body);
  EXPECT_EQ(body["code"], "invalid_argument");
  EXPECT_TRUE(body["message"].is_string());
}

TEST_F(ConnectRouteTest, UnaryNonObjectJsonIs400InvalidArgument) {
  ServerThread server(router_);
  for (std::string body : {"[1,2]", "\"x\"", "5", "null", "true"}) {
    Reply r = Post(server.port(), "/test.Svc/Echo", "application/json", body);
    EXPECT_EQ(r.status, 400u) << body;
    EXPECT_EQ(Parse(r.body)["code"], "invalid_argument") << body;
  }
}

TEST_F(ConnectRouteTest, UnaryHandlerErrorMapsToStatusAndCode) {
  ServerThread server(router_);
  Reply r = Post(server.port(), "/test.Svc/Missing", "application/json", "{}");
  EXPECT_EQ(r.status, 404u);
  EXPECT_EQ(Parse(r.body), json({{"code", "not_found"}, {"message", "no such thing"}}));
}

TEST_F(ConnectRouteTest, UnaryBadTimeoutHeaderIs400) {
  ServerThread server(router_);
  Fields h;
  h.set("Connect-Timeout-Ms", "soon");
  Reply r = Post(server.port(), "/test.Svc/Echo", "application/json", "{}", h);
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(Parse(r.body)["code"], "invalid_argument");
}

TEST_F(ConnectRouteTest, UnaryTimeoutHeaderSetsDeadline) {
  ServerThread server(router_);
  Fields h;
  h.set("Connect-Timeout-Ms", "60000");
  Reply r = Post(server.port(), "/test.Svc/Echo", "application/json", "{}", h);
  EXPECT_EQ(Parse(r.body)["hasDeadline"], true);
}

TEST_F(ConnectRouteTest, UnaryTimeoutZeroMeansNoDeadline) {
  ServerThread server(router_);
  Fields h;
  h.set("Connect-Timeout-Ms", "0");
  Reply r = Post(server.port(), "/test.Svc/Echo", "application/json", "{}", h);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(Parse(r.body)["hasDeadline"], false);
}

TEST(KeepaliveIntervalTest, ParsesSecondsWithAFallback) {
  RequestHead head;
  EXPECT_EQ(KeepaliveInterval(head, std::chrono::seconds(90)), std::chrono::seconds(90));
  for (const char* bad : {"", "0", "-1", "5s", "x", "99999999999"}) {
    head.headers.set("Keepalive-Ping-Interval", bad);
    EXPECT_EQ(KeepaliveInterval(head, std::chrono::seconds(90)), std::chrono::seconds(90)) << bad;
  }
  head.headers.set("Keepalive-Ping-Interval", "50");
  EXPECT_EQ(KeepaliveInterval(head, std::chrono::seconds(90)), std::chrono::seconds(50));
  head.headers.set("Keepalive-Ping-Interval", "4000000");
  EXPECT_EQ(KeepaliveInterval(head, std::chrono::seconds(90)), std::chrono::hours(24));
}

TEST_F(ConnectRouteTest, StreamErrorBeforeAnyMessageIs200WithEndStreamError) {
  ServerThread server(router_);
  Reply r = Post(server.port(), "/test.Svc/FailFirst", "application/connect+json",
                 EncodeEnvelope(0, "{}"));
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "application/connect+json");
  auto frames = Frames(r.body);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].flags, kFlagEndStream);
  EXPECT_EQ(Parse(frames[0].payload),
            json({{"error", {{"code", "not_found"}, {"message", "process with pid 42 not found"}}}}));
}

TEST_F(ConnectRouteTest, StreamSendsMessagesThenEmptyEndStream) {
  ServerThread server(router_);
  Reply r = Post(server.port(), "/test.Svc/Count", "application/connect+json",
                 EncodeEnvelope(0, R"({"n":3})"));
  EXPECT_EQ(r.status, 200u);
  auto frames = Frames(r.body);
  ASSERT_EQ(frames.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(frames[i].flags, 0);
    EXPECT_EQ(Parse(frames[i].payload), json({{"n", i}}));
  }
  EXPECT_EQ(frames[3].flags, kFlagEndStream);
  EXPECT_EQ(Parse(frames[3].payload), json::object());
}

TEST_F(ConnectRouteTest, StreamErrorAfterMessagesEndsWithError) {
  ServerThread server(router_);
  Reply r = Post(server.port(), "/test.Svc/FailLate", "application/connect+json",
                 EncodeEnvelope(0, "{}"));
  auto frames = Frames(r.body);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[1].flags, kFlagEndStream);
  EXPECT_EQ(Parse(frames[1].payload)["error"]["code"], "deadline_exceeded");
}

TEST_F(ConnectRouteTest, StreamMalformedEnvelopeEndsWithInvalidArgument) {
  ServerThread server(router_);
  for (std::string body : {"{}"s, "\x00\x00\x00\x00\x07{}"s, EncodeEnvelope(0, "[1]"),
                           EncodeEnvelope(0, "{oops"), EncodeEnvelope(kFlagEndStream, "{}")}) {
    Reply r = Post(server.port(), "/test.Svc/Count", "application/connect+json", body);
    EXPECT_EQ(r.status, 200u);
    auto frames = Frames(r.body);
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].flags, kFlagEndStream);
    EXPECT_EQ(Parse(frames[0].payload)["error"]["code"], "invalid_argument");
  }
}

TEST_F(ConnectRouteTest, StreamCompressedRequestEndsWithUnimplemented) {
  ServerThread server(router_);
  Reply r = Post(server.port(), "/test.Svc/Count", "application/connect+json",
                 EncodeEnvelope(kFlagCompressed, "xx"));
  auto frames = Frames(r.body);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(Parse(frames[0].payload)["error"]["code"], "unimplemented");
}

TEST_F(ConnectRouteTest, StreamBadTimeoutEndsWithInvalidArgument) {
  ServerThread server(router_);
  Fields h;
  h.set("Connect-Timeout-Ms", "-5");
  Reply r = Post(server.port(), "/test.Svc/Count", "application/connect+json",
                 EncodeEnvelope(0, "{}"), h);
  EXPECT_EQ(r.status, 200u);
  auto frames = Frames(r.body);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(Parse(frames[0].payload)["error"]["code"], "invalid_argument");
}

TEST_F(ConnectRouteTest, StreamWrongContentTypeIs415) {
  ServerThread server(router_);
  Reply r = Post(server.port(), "/test.Svc/Count", "application/json", EncodeEnvelope(0, "{}"));
  EXPECT_EQ(r.status, 415u);
}

TEST_F(ConnectRouteTest, ConnectRoutesArePostOnly) {
  ServerThread server(router_);
  net::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server.port()));
  bhttp::request<bhttp::empty_body> req{bhttp::verb::get, "/test.Svc/Echo", 11};
  req.set(bhttp::field::host, "x");
  bhttp::write(s, req);
  beast::flat_buffer buf;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(s, buf, res);
  EXPECT_EQ(res.result_int(), 405);
}

}  // namespace
}  // namespace kiln::http::connect
