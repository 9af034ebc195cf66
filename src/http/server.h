#pragma once

#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/verb.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace kiln::http {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using Verb = beast::http::verb;
using Fields = beast::http::fields;

template <typename T>
using Task = net::awaitable<T>;

// The parsed request line and headers. Query values are percent-decoded with '+' as space.
struct RequestHead {
  Verb method = Verb::unknown;
  std::string target;  // raw request target
  std::string path;    // percent-decoded path, without the query
  std::vector<std::pair<std::string, std::string>> query;
  Fields headers;

  std::string_view Header(beast::http::field f) const;
  std::string_view Header(std::string_view name) const;
  // First value of a query parameter.
  std::optional<std::string> Query(std::string_view name) const;
};

// A complete response with a buffered body.
struct Response {
  unsigned status = 200;
  Fields headers;
  std::string body;

  static Response Json(unsigned status, std::string body);
  // {"code": status, "message": message}: the error shape of envd's and kilnd's HTTP routes.
  static Response JsonError(unsigned status, std::string_view message);
  static Response Empty(unsigned status);
};

// One request and its response on a connection. Handlers read the body (at most once, in
// full or in pieces) and answer either with Respond() or with a stream
// (StartStream/WriteStream/FinishStream). Not thread-safe; lives on the connection's coroutine.
class Exchange {
 public:
  Exchange(beast::tcp_stream& stream, beast::flat_buffer& buffer,
           beast::http::request_parser<beast::http::buffer_body>& parser, RequestHead head);

  const RequestHead& request() const { return head_; }

  // Reads the whole body, de-chunked. kResourceExhausted when it exceeds `limit`.
  Task<Result<std::string>> ReadBody(size_t limit);
  // Reads the next piece of the body (at most `max` bytes); an empty string means the end.
  Task<Result<std::string>> ReadBodySome(size_t max);
  bool body_done() const;

  Task<Status> Respond(Response response);
  // Sends the status line and headers. With a content length the body is raw bytes,
  // otherwise it is sent with chunked transfer encoding.
  Task<Status> StartStream(unsigned status, Fields headers,
                           std::optional<uint64_t> content_length = std::nullopt);
  Task<Status> WriteStream(std::string_view data);
  Task<Status> FinishStream();

  // True once the client has closed its side of the connection or it broke (a non-blocking
  // peek): for handlers that stream a response for a long time and read nothing meanwhile.
  // Data the client sent ahead (a pipelined request) does not count as gone.
  bool ClientGone();

  bool responded() const { return responded_; }
  bool keep_alive() const { return keep_alive_; }
  // Called when the connection must close after this exchange.
  void set_keep_alive(bool v) { keep_alive_ = v; }

 private:
  void AddCommonHeaders(Fields& headers) const;
  // Answers "Expect: 100-continue" before the first body read (curl waits ~1 s otherwise).
  Task<Status> SendContinueIfExpected();

  beast::tcp_stream& stream_;
  beast::flat_buffer& buffer_;
  beast::http::request_parser<beast::http::buffer_body>& parser_;
  RequestHead head_;
  bool responded_ = false;
  bool chunked_ = false;
  bool keep_alive_ = true;
  bool continue_sent_ = false;
};

using Handler = std::function<Task<void>(Exchange&)>;

// Maps (method, exact path) to a handler. Unknown path -> 404 JSON, known path with another
// method -> 405 JSON.
class Router {
 public:
  void Add(Verb method, std::string path, Handler handler);
  // Runs before every handler. Returning a Response answers the request with it instead.
  void SetFilter(std::function<std::optional<Response>(const RequestHead&)> filter);

  Task<void> Dispatch(Exchange& ex) const;

 private:
  std::map<std::string, std::map<Verb, Handler>> routes_;
  std::function<std::optional<Response>(const RequestHead&)> filter_;
};

struct ServerOptions {
  // Largest request line + headers; larger requests get 431.
  uint32_t header_limit = 64 * 1024;
  // How long an idle keep-alive connection, or a client sending its headers, may take.
  std::chrono::seconds idle_timeout{640};
  // Answer CORS preflights and add Access-Control-* headers to every response.
  bool cors = true;
};

// HTTP/1.1 server on one io_context. Each connection is a coroutine that serves requests
// one after another (keep-alive). Handlers run on the same io_context.
class Server {
 public:
  Server(net::io_context& io, const Router& router, ServerOptions options);
  // Every request goes to `handler` (which must answer it), e.g. a proxy in front of a Router.
  Server(net::io_context& io, Handler handler, ServerOptions options);

  // Binds and listens; port 0 picks a free port (see port()).
  Status Listen(const std::string& host, uint16_t port);
  // Adopts an already listening socket.
  Status Adopt(int listening_fd);
  uint16_t port() const;
  void Start();

 private:
  Task<void> AcceptLoop();
  Task<void> Serve(tcp::socket socket);

  net::io_context& io_;
  Handler handler_;
  ServerOptions options_;
  tcp::acceptor acceptor_;
};

// Percent-decodes `s`; with `plus_as_space`, '+' becomes ' '. nullopt on a bad escape.
std::optional<std::string> PercentDecode(std::string_view s, bool plus_as_space);
// Splits and decodes a query string.
std::optional<std::vector<std::pair<std::string, std::string>>> ParseQuery(std::string_view q);
std::string PercentEncode(std::string_view s);

}  // namespace kiln::http
