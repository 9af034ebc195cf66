#include "http/server.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>

namespace kiln::http {
namespace {

namespace bhttp = beast::http;
using boost::system::error_code;
using nlohmann::json;
using namespace std::chrono_literals;

// Runs a Server for `router` on 127.0.0.1, port 0, on its own io_context thread.
class ServerThread {
 public:
  explicit ServerThread(const Router& router, ServerOptions options = {})
      : server_(io_, router, options) {
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

// A blocking HTTP/1.1 client on one connection. Reads time out after 5 s so that a server
// bug fails the test instead of hanging it.
class Client {
 public:
  explicit Client(uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    timeval tv{5, 0};
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  void SendRaw(std::string_view data) {
    error_code ec;
    net::write(socket_, net::buffer(data.data(), data.size()), ec);
    EXPECT_FALSE(ec) << ec.message();
  }

  void Send(Verb method, std::string target, std::string body = {}, Fields headers = {}) {
    bhttp::request<bhttp::string_body> req{method, target, 11};
    for (const auto& f : headers) req.set(f.name_string(), f.value());
    req.set(bhttp::field::host, "127.0.0.1");
    req.body() = std::move(body);
    req.prepare_payload();
    error_code ec;
    bhttp::write(socket_, req, ec);
    EXPECT_FALSE(ec) << ec.message();
  }

  bhttp::response<bhttp::string_body> Read() {
    bhttp::response<bhttp::string_body> res;
    error_code ec;
    bhttp::read(socket_, buffer_, res, ec);
    EXPECT_FALSE(ec) << ec.message();
    return res;
  }

  bhttp::response<bhttp::string_body> Call(Verb method, std::string target, std::string body = {},
                                           Fields headers = {}) {
    Send(method, std::move(target), std::move(body), std::move(headers));
    return Read();
  }

  // True when the server closed the connection (EOF) rather than leaving it open.
  bool PeerClosed() {
    char c;
    error_code ec;
    size_t n = socket_.read_some(net::buffer(&c, 1), ec);
    return n == 0 && (ec == net::error::eof || ec == net::error::connection_reset);
  }

  tcp::socket& socket() { return socket_; }
  beast::flat_buffer& buffer() { return buffer_; }

 private:
  net::io_context io_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

json Parse(const std::string& body) { return json::parse(body, nullptr, false); }

std::string DescribeRequest(const RequestHead& head, const std::string& body) {
  json q = json::array();
  for (const auto& [k, v] : head.query) q.push_back(json::array({k, v}));
  json j = {{"path", head.path}, {"target", head.target}, {"query", q}, {"body", body}};
  return j.dump();
}

// /echo answers with the request's path, query and body as JSON.
Task<void> Echo(Exchange& ex) {
  Result<std::string> body = co_await ex.ReadBody(1 << 20);
  if (!body) {
    co_await ex.Respond(Response::JsonError(413, body.error().message()));
    co_return;
  }
  co_await ex.Respond(Response::Json(200, DescribeRequest(ex.request(), *body)));
}

class ServerTest : public testing::Test {
 protected:
  ServerTest() {
    router_.Add(Verb::get, "/echo", Echo);
    router_.Add(Verb::post, "/echo", Echo);
    router_.Add(Verb::get, "/a b", Echo);
    router_.Add(Verb::post, "/limited", [](Exchange& ex) -> Task<void> {
      Result<std::string> body = co_await ex.ReadBody(16);
      if (!body) {
        co_await ex.Respond(Response::JsonError(413, body.error().message()));
        co_return;
      }
      co_await ex.Respond(Response::Json(200, "{}"));
    });
    router_.Add(Verb::post, "/ignore-body", [](Exchange& ex) -> Task<void> {
      co_await ex.Respond(Response::Empty(204));
    });
    router_.Add(Verb::get, "/throws", [](Exchange&) -> Task<void> {
      throw std::runtime_error("boom");
      co_return;
    });
    router_.Add(Verb::get, "/silent", [](Exchange&) -> Task<void> { co_return; });
  }

  Router router_;
};

TEST_F(ServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  ServerThread server(router_);
  Client c(server.port());
  auto first = c.Call(Verb::get, "/echo?n=1");
  EXPECT_EQ(first.result_int(), 200);
  EXPECT_TRUE(first.keep_alive());
  auto second = c.Call(Verb::post, "/echo?n=2", "payload");
  EXPECT_EQ(second.result_int(), 200);
  EXPECT_EQ(Parse(second.body())["body"], "payload");
  auto third = c.Call(Verb::get, "/echo?n=3");
  EXPECT_EQ(Parse(third.body())["query"][0][1], "3");
}

TEST_F(ServerTest, ConnectionCloseFromClientClosesAfterResponse) {
  ServerThread server(router_);
  Client c(server.port());
  Fields h;
  h.set(bhttp::field::connection, "close");
  auto res = c.Call(Verb::get, "/echo", {}, h);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(c.PeerClosed());
}

TEST_F(ServerTest, ChunkedRequestBodyIsDechunked) {
  ServerThread server(router_);
  Client c(server.port());
  c.SendRaw(
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  auto res = c.Read();
  ASSERT_EQ(res.result_int(), 200);
  EXPECT_EQ(Parse(res.body())["body"], "hello world");
  // The connection stays usable after a chunked body.
  EXPECT_EQ(c.Call(Verb::get, "/echo").result_int(), 200);
}

TEST_F(ServerTest, QueryValuesDecodePlusAndPercentEscapes) {
  ServerThread server(router_);
  Client c(server.port());
  auto res = c.Call(Verb::get, "/echo?path=%2Fhome%2Fuser%2Fa+b.txt&x=1%2B1&empty=&flag&&y=%41");
  ASSERT_EQ(res.result_int(), 200);
  json q = Parse(res.body())["query"];
  json want = json::array({json::array({"path", "/home/user/a b.txt"}), json::array({"x", "1+1"}),
                           json::array({"empty", ""}), json::array({"flag", ""}),
                           json::array({"y", "A"})});
  EXPECT_EQ(q, want);
}

TEST_F(ServerTest, PathIsPercentDecodedButPlusStaysPlus) {
  ServerThread server(router_);
  Client c(server.port());
  auto res = c.Call(Verb::get, "/a%20b");
  ASSERT_EQ(res.result_int(), 200);
  EXPECT_EQ(Parse(res.body())["path"], "/a b");
  EXPECT_EQ(Parse(res.body())["target"], "/a%20b");
  // '+' in a path is a literal plus, so "/a+b" is not "/a b".
  EXPECT_EQ(c.Call(Verb::get, "/a+b").result_int(), 404);
}

TEST_F(ServerTest, AnswersCorsPreflight) {
  ServerThread server(router_);
  Client c(server.port());
  Fields h;
  h.set(bhttp::field::origin, "https://example.test");
  h.set(bhttp::field::access_control_request_method, "POST");
  h.set(bhttp::field::access_control_request_headers, "x-access-token, content-type");
  auto res = c.Call(Verb::options, "/anything-at-all", {}, h);
  EXPECT_EQ(res.result_int(), 204);
  EXPECT_EQ(res[bhttp::field::access_control_allow_origin], "*");
  EXPECT_EQ(res[bhttp::field::access_control_allow_headers], "x-access-token, content-type");
  EXPECT_NE(res[bhttp::field::access_control_allow_methods].find("POST"), std::string::npos);
  EXPECT_FALSE(res[bhttp::field::access_control_max_age].empty());
  EXPECT_TRUE(res.body().empty());
}

TEST_F(ServerTest, PreflightWithoutRequestedHeadersAllowsAll) {
  ServerThread server(router_);
  Client c(server.port());
  auto res = c.Call(Verb::options, "/echo");
  EXPECT_EQ(res.result_int(), 204);
  EXPECT_EQ(res[bhttp::field::access_control_allow_headers], "*");
}

TEST_F(ServerTest, EveryResponseCarriesCorsHeaders) {
  ServerThread server(router_);
  Client c(server.port());
  auto ok = c.Call(Verb::get, "/echo");
  EXPECT_EQ(ok[bhttp::field::access_control_allow_origin], "*");
  EXPECT_EQ(ok[bhttp::field::access_control_expose_headers], "*");
  auto missing = c.Call(Verb::get, "/nope");
  EXPECT_EQ(missing[bhttp::field::access_control_allow_origin], "*");
}

TEST_F(ServerTest, CorsCanBeTurnedOff) {
  ServerOptions opts;
  opts.cors = false;
  ServerThread server(router_, opts);
  Client c(server.port());
  // OPTIONS is then routed like any method: /echo has no OPTIONS handler.
  EXPECT_EQ(c.Call(Verb::options, "/echo").result_int(), 405);
}

TEST_F(ServerTest, MalformedRequestLineGets400JsonAndClose) {
  ServerThread server(router_);
  Client c(server.port());
  c.SendRaw("THIS IS NOT HTTP\r\n\r\n");
  auto res = c.Read();
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_EQ(res[bhttp::field::content_type], "application/json");
  json body = Parse(res.body());
  EXPECT_EQ(body["code"], 400);
  EXPECT_TRUE(body["message"].is_string());
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(c.PeerClosed());
}

TEST_F(ServerTest, OversizedHeadersGet431) {
  ServerOptions opts;
  opts.header_limit = 1024;
  ServerThread server(router_, opts);
  Client c(server.port());
  c.SendRaw("GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n");
  auto res = c.Read();
  EXPECT_EQ(res.result_int(), 431);
  EXPECT_EQ(Parse(res.body())["code"], 431);
  EXPECT_TRUE(c.PeerClosed());
}

TEST_F(ServerTest, BadPercentEscapeInPathGets400) {
  ServerThread server(router_);
  Client c(server.port());
  c.SendRaw("GET /echo%zz HTTP/1.1\r\nHost: x\r\n\r\n");
  auto res = c.Read();
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_EQ(Parse(res.body())["code"], 400);
  EXPECT_EQ(Parse(res.body())["message"], "malformed request target");
  EXPECT_TRUE(c.PeerClosed());
}

TEST_F(ServerTest, BadPercentEscapeInQueryGets400) {
  ServerThread server(router_);
  Client c(server.port());
  c.SendRaw("GET /echo?path=%4 HTTP/1.1\r\nHost: x\r\n\r\n");
  auto res = c.Read();
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_EQ(Parse(res.body())["code"], 400);
}

TEST_F(ServerTest, UnknownPathGets404Json) {
  ServerThread server(router_);
  Client c(server.port());
  auto res = c.Call(Verb::get, "/nope");
  EXPECT_EQ(res.result_int(), 404);
  EXPECT_EQ(res[bhttp::field::content_type], "application/json");
  EXPECT_EQ(Parse(res.body()), json({{"code", 404}, {"message", "no route for /nope"}}));
  EXPECT_TRUE(res.keep_alive());
}

TEST_F(ServerTest, WrongMethodGets405Json) {
  ServerThread server(router_);
  Client c(server.port());
  auto res = c.Call(Verb::delete_, "/echo");
  EXPECT_EQ(res.result_int(), 405);
  EXPECT_EQ(Parse(res.body()), json({{"code", 405}, {"message", "method not allowed"}}));
}

TEST_F(ServerTest, FilterAnswersInsteadOfHandlerButNotForUnknownRoutes) {
  router_.SetFilter([](const RequestHead& head) -> std::optional<Response> {
    if (head.Header("x-pass") == "yes") return std::nullopt;
    return Response::JsonError(401, "denied");
  });
  ServerThread server(router_);
  Client c(server.port());
  EXPECT_EQ(c.Call(Verb::get, "/echo").result_int(), 401);
  Fields h;
  h.set("X-Pass", "yes");
  EXPECT_EQ(c.Call(Verb::get, "/echo", {}, h).result_int(), 200);
  EXPECT_EQ(c.Call(Verb::get, "/nope").result_int(), 404);
}

TEST_F(ServerTest, StreamingResponseFlushesEachChunk) {
  std::atomic<bool> got_first{false};
  router_.Add(Verb::get, "/stream", [&got_first](Exchange& ex) -> Task<void> {
    Fields h;
    h.set(bhttp::field::content_type, "text/plain");
    if (!co_await ex.StartStream(200, std::move(h))) co_return;
    if (!co_await ex.WriteStream("first;")) co_return;
    // Only write more once the client has seen the first chunk: a buffered (unflushed)
    // chunk would make the client time out instead.
    net::steady_timer timer(co_await net::this_coro::executor);
    for (int i = 0; i < 5000 && !got_first.load(); ++i) {
      timer.expires_after(1ms);
      co_await timer.async_wait(net::use_awaitable);
    }
    if (!co_await ex.WriteStream("second;")) co_return;
    if (!co_await ex.WriteStream("third")) co_return;
    (void)co_await ex.FinishStream();
  });
  ServerThread server(router_);
  Client c(server.port());
  c.Send(Verb::get, "/stream");
  bhttp::response_parser<bhttp::string_body> parser;
  error_code ec;
  bhttp::read_header(c.socket(), c.buffer(), parser, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(parser.chunked());
  EXPECT_EQ(parser.get()[bhttp::field::access_control_allow_origin], "*");
  while (parser.get().body().find("first;") == std::string::npos && !parser.is_done()) {
    bhttp::read_some(c.socket(), c.buffer(), parser, ec);
    ASSERT_FALSE(ec) << ec.message();
  }
  EXPECT_EQ(parser.get().body(), "first;");
  got_first = true;
  bhttp::read(c.socket(), c.buffer(), parser, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(parser.get().body(), "first;second;third");
  // Keep-alive survives a chunked response.
  EXPECT_EQ(c.Call(Verb::get, "/echo").result_int(), 200);
}

TEST_F(ServerTest, StreamWithContentLengthIsNotChunked) {
  router_.Add(Verb::get, "/fixed", [](Exchange& ex) -> Task<void> {
    if (!co_await ex.StartStream(200, Fields(), 10)) co_return;
    (void)co_await ex.WriteStream("01234");
    (void)co_await ex.WriteStream("56789");
    (void)co_await ex.FinishStream();
  });
  ServerThread server(router_);
  Client c(server.port());
  auto res = c.Call(Verb::get, "/fixed");
  EXPECT_FALSE(res.chunked());
  EXPECT_EQ(res[bhttp::field::content_length], "10");
  EXPECT_EQ(res.body(), "0123456789");
}

TEST_F(ServerTest, BodyOverLimitByContentLengthIsRejected) {
  ServerThread server(router_);
  Client c(server.port());
  auto res = c.Call(Verb::post, "/limited", std::string(100, 'x'));
  EXPECT_EQ(res.result_int(), 413);
  EXPECT_EQ(Parse(res.body())["message"], "request body too large");
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(c.PeerClosed());
}

TEST_F(ServerTest, ChunkedBodyOverLimitIsRejected) {
  ServerThread server(router_);
  Client c(server.port());
  c.SendRaw(
      "POST /limited HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n");
  auto res = c.Read();
  EXPECT_EQ(res.result_int(), 413);
  EXPECT_EQ(Parse(res.body())["message"], "request body too large");
  EXPECT_FALSE(res.keep_alive());
}

TEST_F(ServerTest, BodyWithinLimitIsAccepted) {
  ServerThread server(router_);
  Client c(server.port());
  EXPECT_EQ(c.Call(Verb::post, "/limited", std::string(16, 'x')).result_int(), 200);
}

TEST_F(ServerTest, UnreadBodyEndsTheConnectionAfterTheResponse) {
  ServerThread server(router_);
  Client c(server.port());
  auto res = c.Call(Verb::post, "/ignore-body", std::string(1000, 'x'));
  EXPECT_EQ(res.result_int(), 204);
  EXPECT_TRUE(c.PeerClosed());
}

TEST_F(ServerTest, ThrowingHandlerGets500AndClose) {
  ServerThread server(router_);
  Client c(server.port());
  auto res = c.Call(Verb::get, "/throws");
  EXPECT_EQ(res.result_int(), 500);
  EXPECT_EQ(Parse(res.body())["message"], "internal error");
  EXPECT_TRUE(c.PeerClosed());
}

TEST_F(ServerTest, HandlerWithoutResponseGets500) {
  ServerThread server(router_);
  Client c(server.port());
  auto res = c.Call(Verb::get, "/silent");
  EXPECT_EQ(res.result_int(), 500);
  EXPECT_EQ(Parse(res.body())["message"], "handler sent no response");
}

TEST_F(ServerTest, ServesSeveralConnectionsAtOnce) {
  ServerThread server(router_);
  Client a(server.port());
  Client b(server.port());
  a.Send(Verb::get, "/echo?who=a");
  EXPECT_EQ(Parse(b.Call(Verb::get, "/echo?who=b").body())["query"][0][1], "b");
  EXPECT_EQ(Parse(a.Read().body())["query"][0][1], "a");
}

TEST_F(ServerTest, ExpectContinueGets100BeforeTheBodyIsRead) {
  ServerThread server(router_);
  Client c(server.port());
  c.SendRaw(
      "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  std::string interim;
  while (interim.find("\r\n\r\n") == std::string::npos) {
    char buf[256];
    error_code ec;
    size_t n = c.socket().read_some(net::buffer(buf), ec);
    ASSERT_FALSE(ec) << ec.message();
    interim.append(buf, n);
  }
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  c.SendRaw("hello");
  auto res = c.Read();
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(Parse(res.body())["body"], "hello");
}

TEST_F(ServerTest, ExpectContinueIsNotSentWhenTheBodyIsNotRead) {
  ServerThread server(router_);
  Client c(server.port());
  c.SendRaw(
      "POST /limited HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
      "Content-Length: 100\r\n\r\n");
  auto res = c.Read();  // the final answer straight away, no 100 first
  EXPECT_EQ(res.result_int(), 413);
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  ServerThread server(router_);
  Client c(server.port());
  c.SendRaw(
      "GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /echo?n=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
      "GET /echo?n=3 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(Parse(c.Read().body())["query"][0][1], "1");
  json second = Parse(c.Read().body());
  EXPECT_EQ(second["query"][0][1], "2");
  EXPECT_EQ(second["body"], "abc");
  EXPECT_EQ(Parse(c.Read().body())["query"][0][1], "3");
}

TEST_F(ServerTest, ClientLeavingMidStreamFailsTheWriteAndServerKeepsServing) {
  std::atomic<bool> write_failed{false};
  router_.Add(Verb::get, "/endless", [&write_failed](Exchange& ex) -> Task<void> {
    if (!co_await ex.StartStream(200, Fields())) co_return;
    net::steady_timer timer(co_await net::this_coro::executor);
    std::string piece(16 * 1024, 'x');
    for (int i = 0; i < 10000; ++i) {
      if (!co_await ex.WriteStream(piece)) {
        write_failed = true;
        co_return;
      }
      timer.expires_after(1ms);
      co_await timer.async_wait(net::use_awaitable);
    }
  });
  ServerThread server(router_);
  {
    Client c(server.port());
    c.Send(Verb::get, "/endless");
    bhttp::response_parser<bhttp::string_body> parser;
    error_code ec;
    bhttp::read_header(c.socket(), c.buffer(), parser, ec);
    ASSERT_FALSE(ec) << ec.message();
  }  // closes the connection
  for (int i = 0; i < 5000 && !write_failed.load(); ++i) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(write_failed.load());
  Client again(server.port());
  EXPECT_EQ(again.Call(Verb::get, "/echo").result_int(), 200);
}

TEST(PercentCodingTest, DecodesEscapesAndOptionallyPlus) {
  EXPECT_EQ(PercentDecode("a%20b+c", false), "a b+c");
  EXPECT_EQ(PercentDecode("a%20b+c", true), "a b c");
  EXPECT_EQ(PercentDecode("%e2%82%AC", false), "\xe2\x82\xac");
  EXPECT_EQ(PercentDecode("%", false), std::nullopt);
  EXPECT_EQ(PercentDecode("%4", false), std::nullopt);
  EXPECT_EQ(PercentDecode("%g0", false), std::nullopt);
  EXPECT_EQ(PercentDecode("ab%", false), std::nullopt);
}

TEST(PercentCodingTest, EncodesAllButUnreserved) {
  EXPECT_EQ(PercentEncode("aZ09-_.~"), "aZ09-_.~");
  EXPECT_EQ(PercentEncode("a b/c+"), "a%20b%2Fc%2B");
  EXPECT_EQ(PercentDecode(PercentEncode("\x01\xff/?#&="), false), "\x01\xff/?#&=");
}

TEST(PercentCodingTest, ParseQueryKeepsOrderAndDuplicates) {
  auto q = ParseQuery("a=1&a=2&b");
  ASSERT_TRUE(q);
  ASSERT_EQ(q->size(), 3u);
  EXPECT_EQ((*q)[1], std::make_pair(std::string("a"), std::string("2")));
  EXPECT_EQ((*q)[2], std::make_pair(std::string("b"), std::string()));
  EXPECT_EQ(ParseQuery("a=%zz"), std::nullopt);
  EXPECT_EQ(ParseQuery("%zz=1"), std::nullopt);
}

TEST(RequestHeadTest, HeaderLookupIsCaseInsensitiveAndQueryTakesFirst) {
  RequestHead head;
  head.headers.set("X-Access-Token", "t");
  head.query = {{"p", "1"}, {"p", "2"}};
  EXPECT_EQ(head.Header("x-access-token"), "t");
  EXPECT_EQ(head.Header("missing"), "");
  EXPECT_EQ(head.Query("p"), "1");
  EXPECT_EQ(head.Query("q"), std::nullopt);
}

TEST(ResponseTest, JsonErrorHasCodeAndMessage) {
  Response r = Response::JsonError(404, "path '/x\xff' does not exist");
  EXPECT_EQ(r.status, 404u);
  EXPECT_EQ(r.headers[bhttp::field::content_type], "application/json");
  json j = Parse(r.body);
  ASSERT_FALSE(j.is_discarded());  // invalid UTF-8 is replaced, not thrown
  EXPECT_EQ(j["code"], 404);
}

}  // namespace
}  // namespace kiln::http
