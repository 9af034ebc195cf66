#include "http/server.h"

#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/log.h"

namespace kiln::http {
namespace bhttp = beast::http;
using boost::system::error_code;

namespace {

constexpr auto kBodyReadTimeout = std::chrono::seconds(60);
constexpr auto kWriteTimeout = std::chrono::seconds(60);

auto Redirect(error_code& ec) { return net::redirect_error(net::use_awaitable, ec); }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> PercentDecode(std::string_view s, bool plus_as_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = HexValue(s[i + 1]);
      int lo = HexValue(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_as_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::optional<std::vector<std::pair<std::string, std::string>>> ParseQuery(std::string_view q) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    auto key = PercentDecode(part.substr(0, eq), true);
    auto value = PercentDecode(eq == std::string_view::npos ? "" : part.substr(eq + 1), true);
    if (!key || !value) return std::nullopt;
    out.emplace_back(std::move(*key), std::move(*value));
  }
  return out;
}

std::string_view RequestHead::Header(bhttp::field f) const {
  auto it = headers.find(f);
  if (it == headers.end()) return {};
  return {it->value().data(), it->value().size()};
}

std::string_view RequestHead::Header(std::string_view name) const {
  auto it = headers.find(beast::string_view(name.data(), name.size()));
  if (it == headers.end()) return {};
  return {it->value().data(), it->value().size()};
}

std::optional<std::string> RequestHead::Query(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return v;
  }
  return std::nullopt;
}

Response Response::Json(unsigned status, std::string body) {
  Response r;
  r.status = status;
  r.headers.set(bhttp::field::content_type, "application/json");
  r.body = std::move(body);
  return r;
}

Response Response::JsonError(unsigned status, std::string_view message) {
  nlohmann::json j = {{"code", status}, {"message", std::string(message)}};
  return Json(status, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

Response Response::Empty(unsigned status) {
  Response r;
  r.status = status;
  return r;
}

Exchange::Exchange(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                   bhttp::request_parser<bhttp::buffer_body>& parser, RequestHead head)
    : stream_(stream), buffer_(buffer), parser_(parser), head_(std::move(head)) {
  keep_alive_ = parser_.get().keep_alive();
}

bool Exchange::body_done() const { return parser_.is_done(); }

Task<Status> Exchange::SendContinueIfExpected() {
  if (continue_sent_ || responded_) co_return Status();
  continue_sent_ = true;
  if (!beast::iequals(head_.Header(bhttp::field::expect), "100-continue")) co_return Status();
  static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
  error_code ec;
  stream_.expires_after(kWriteTimeout);
  co_await net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                            Redirect(ec));
  stream_.expires_never();
  if (ec) {
    keep_alive_ = false;
    co_return Unexpected(Error(Errc::kUnavailable, "write 100 Continue: " + ec.message()));
  }
  co_return Status();
}

Task<Result<std::string>> Exchange::ReadBodySome(size_t max) {
  std::string out;
  if (parser_.is_done()) co_return out;
  KILN_CO_TRY(co_await SendContinueIfExpected());
  out.resize(max);
  while (!parser_.is_done()) {
    parser_.get().body().data = out.data();
    parser_.get().body().size = out.size();
    stream_.expires_after(kBodyReadTimeout);
    error_code ec;
    co_await bhttp::async_read_some(stream_, buffer_, parser_, Redirect(ec));
    stream_.expires_never();
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec) {
      keep_alive_ = false;
      co_return Unexpected(Error(Errc::kInvalidArgument, "read request body: " + ec.message()));
    }
    size_t got = out.size() - parser_.get().body().size;
    if (got > 0) {
      out.resize(got);
      co_return out;
    }
  }
  out.clear();
  co_return out;
}

Task<Result<std::string>> Exchange::ReadBody(size_t limit) {
  std::string body;
  if (auto len = parser_.content_length(); len && *len > limit) {
    keep_alive_ = false;
    co_return Unexpected(Error(Errc::kResourceExhausted, "request body too large"));
  }
  while (!parser_.is_done()) {
    auto piece = co_await ReadBodySome(64 * 1024);
    if (!piece) co_return Unexpected(std::move(piece).error());
    if (piece->empty()) break;
    if (body.size() + piece->size() > limit) {
      keep_alive_ = false;
      co_return Unexpected(Error(Errc::kResourceExhausted, "request body too large"));
    }
    body += *piece;
  }
  co_return body;
}

void Exchange::AddCommonHeaders(Fields& headers) const {
  headers.set(bhttp::field::server, "kiln");
  // Permissive CORS, as upstream envd: browser SDK clients call the agent directly.
  headers.set(bhttp::field::access_control_allow_origin, "*");
  headers.set(bhttp::field::access_control_expose_headers, "*");
}

Task<Status> Exchange::Respond(Response response) {
  responded_ = true;
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(response.status), 11};
  for (const auto& f : response.headers) res.set(f.name_string(), f.value());
  AddCommonHeaders(res.base());
  res.body() = std::move(response.body);
  res.keep_alive(keep_alive_);
  res.prepare_payload();
  error_code ec;
  stream_.expires_after(kWriteTimeout);
  co_await bhttp::async_write(stream_, res, Redirect(ec));
  stream_.expires_never();
  if (ec) {
    keep_alive_ = false;
    co_return Unexpected(Error(Errc::kUnavailable, "write response: " + ec.message()));
  }
  co_return Status();
}

Task<Status> Exchange::StartStream(unsigned status, Fields headers,
                                   std::optional<uint64_t> content_length) {
  responded_ = true;
  bhttp::response<bhttp::empty_body> res{static_cast<bhttp::status>(status), 11};
  for (const auto& f : headers) res.set(f.name_string(), f.value());
  AddCommonHeaders(res.base());
  res.keep_alive(keep_alive_);
  if (content_length) {
    res.content_length(*content_length);
  } else {
    res.chunked(true);
    chunked_ = true;
  }
  bhttp::response_serializer<bhttp::empty_body> sr{res};
  error_code ec;
  stream_.expires_after(kWriteTimeout);
  co_await bhttp::async_write_header(stream_, sr, Redirect(ec));
  stream_.expires_never();
  if (ec) {
    keep_alive_ = false;
    co_return Unexpected(Error(Errc::kUnavailable, "write response header: " + ec.message()));
  }
  co_return Status();
}

bool Exchange::ClientGone() {
  if (!stream_.socket().is_open()) return true;
  char byte;
  ssize_t n = recv(stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;  // orderly close
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

Task<Status> Exchange::WriteStream(std::string_view data) {
  if (data.empty()) co_return Status();
  error_code ec;
  stream_.expires_after(kWriteTimeout);
  if (chunked_) {
    co_await net::async_write(stream_, bhttp::make_chunk(net::buffer(data.data(), data.size())),
                              Redirect(ec));
  } else {
    co_await net::async_write(stream_, net::buffer(data.data(), data.size()), Redirect(ec));
  }
  stream_.expires_never();
  if (ec) {
    keep_alive_ = false;
    co_return Unexpected(Error(Errc::kUnavailable, "write response body: " + ec.message()));
  }
  co_return Status();
}

Task<Status> Exchange::FinishStream() {
  if (!chunked_) co_return Status();
  error_code ec;
  stream_.expires_after(kWriteTimeout);
  co_await net::async_write(stream_, bhttp::make_chunk_last(), Redirect(ec));
  stream_.expires_never();
  if (ec) {
    keep_alive_ = false;
    co_return Unexpected(Error(Errc::kUnavailable, "finish response: " + ec.message()));
  }
  co_return Status();
}

void Router::Add(Verb method, std::string path, Handler handler) {
  routes_[std::move(path)][method] = std::move(handler);
}

void Router::SetFilter(std::function<std::optional<Response>(const RequestHead&)> filter) {
  filter_ = std::move(filter);
}

Task<void> Router::Dispatch(Exchange& ex) const {
  const RequestHead& req = ex.request();
  auto it = routes_.find(req.path);
  if (it == routes_.end()) {
    co_await ex.Respond(Response::JsonError(404, "no route for " + log::Sanitize(req.path)));
    co_return;
  }
  auto h = it->second.find(req.method);
  if (h == it->second.end()) {
    co_await ex.Respond(Response::JsonError(405, "method not allowed"));
    co_return;
  }
  if (filter_) {
    if (std::optional<Response> deny = filter_(req)) {
      co_await ex.Respond(std::move(*deny));
      co_return;
    }
  }
  co_await h->second(ex);
}

Server::Server(net::io_context& io, const Router& router, ServerOptions options)
    : Server(io, [&router](Exchange& ex) { return router.Dispatch(ex); }, options) {}

Server::Server(net::io_context& io, Handler handler, ServerOptions options)
    : io_(io), handler_(std::move(handler)), options_(options), acceptor_(io) {}

Status Server::Listen(const std::string& host, uint16_t port) {
  error_code ec;
  auto addr = net::ip::make_address(host, ec);
  if (ec) return Fail(Errc::kInvalidArgument, "bad listen address " + host);
  tcp::endpoint ep(addr, port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Fail(Errc::kUnavailable,
                "listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
  }
  return Status();
}

Status Server::Adopt(int listening_fd) {
  error_code ec;
  acceptor_.assign(tcp::v4(), listening_fd, ec);
  if (ec) return Fail(Errc::kInvalidArgument, "adopt listening socket: " + ec.message());
  return Status();
}

uint16_t Server::port() const {
  error_code ec;
  return acceptor_.local_endpoint(ec).port();
}

void Server::Start() { net::co_spawn(io_, AcceptLoop(), net::detached); }

Task<void> Server::AcceptLoop() {
  for (;;) {
    error_code ec;
    tcp::socket socket = co_await acceptor_.async_accept(Redirect(ec));
    if (ec == net::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: back off briefly instead of spinning.
      KILN_LOG(Warn, "accept failed", {"error", ec.message()});
      net::steady_timer t(io_, std::chrono::milliseconds(50));
      co_await t.async_wait(Redirect(ec));
      continue;
    }
    net::co_spawn(io_, Serve(std::move(socket)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        KILN_LOG(Error, "connection failed", {"error", ex.what()});
      }
    });
  }
}

namespace {

Response CorsPreflight(const RequestHead& req) {
  Response r = Response::Empty(204);
  r.headers.set(bhttp::field::access_control_allow_methods, "GET, POST, PUT, DELETE, OPTIONS");
  std::string_view asked = req.Header(bhttp::field::access_control_request_headers);
  r.headers.set(bhttp::field::access_control_allow_headers, asked.empty() ? "*" : asked);
  r.headers.set(bhttp::field::access_control_max_age, "7200");
  return r;
}

std::optional<RequestHead> MakeHead(const bhttp::request<bhttp::buffer_body>& msg) {
  RequestHead head;
  head.method = msg.method();
  head.target = std::string(msg.target());
  std::string_view target = head.target;
  size_t q = target.find('?');
  auto path = PercentDecode(target.substr(0, q), false);
  if (!path) return std::nullopt;
  head.path = std::move(*path);
  if (q != std::string_view::npos) {
    auto query = ParseQuery(target.substr(q + 1));
    if (!query) return std::nullopt;
    head.query = std::move(*query);
  }
  head.headers = msg.base();
  return head;
}

}  // namespace

Task<void> Server::Serve(tcp::socket socket) {
  // Responses go out as several small writes (header, then one per stream frame); with Nagle
  // on, each write after the first waits for the peer's delayed ACK (~40 ms on Linux).
  error_code nodelay_ec;
  socket.set_option(tcp::no_delay(true), nodelay_ec);
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  // Room for large body reads: with the default small buffer, uploads arrive ~512 bytes a read.
  buffer.reserve(64 * 1024);
  for (;;) {
    bhttp::request_parser<bhttp::buffer_body> parser;
    parser.header_limit(options_.header_limit);
    parser.body_limit((std::numeric_limits<std::uint64_t>::max)());
    stream.expires_after(options_.idle_timeout);
    error_code ec;
    co_await bhttp::async_read_header(stream, buffer, parser, Redirect(ec));
    stream.expires_never();
    if (ec == bhttp::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == beast::error::timeout ||
        ec == net::error::operation_aborted) {
      break;
    }
    if (ec) {
      unsigned status = ec == bhttp::error::header_limit ? 431 : 400;
      Response r = Response::JsonError(status, "malformed request: " + ec.message());
      r.headers.set(bhttp::field::connection, "close");
      bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), 11};
      for (const auto& f : r.headers) res.set(f.name_string(), f.value());
      res.body() = r.body;
      res.keep_alive(false);
      res.prepare_payload();
      stream.expires_after(kWriteTimeout);
      co_await bhttp::async_write(stream, res, Redirect(ec));
      break;
    }
    std::optional<RequestHead> head = MakeHead(parser.get());
    Exchange ex(stream, buffer, parser, head ? std::move(*head) : RequestHead());
    if (!head) {
      ex.set_keep_alive(false);
      co_await ex.Respond(Response::JsonError(400, "malformed request target"));
      break;
    }
    if (options_.cors && ex.request().method == Verb::options) {
      co_await ex.Respond(CorsPreflight(ex.request()));
    } else {
      std::exception_ptr failure;
      try {
        co_await handler_(ex);
      } catch (...) {
        failure = std::current_exception();
      }
      if (failure) {
        try {
          std::rethrow_exception(failure);
        } catch (const std::exception& e) {
          KILN_LOG(Error, "handler threw", {"path", log::Sanitize(ex.request().path)},
                   {"error", e.what()});
        }
        ex.set_keep_alive(false);
        if (!ex.responded()) co_await ex.Respond(Response::JsonError(500, "internal error"));
      } else if (!ex.responded()) {
        co_await ex.Respond(Response::JsonError(500, "handler sent no response"));
      }
    }
    if (!ex.keep_alive() || !ex.body_done()) break;
  }
  error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace kiln::http
