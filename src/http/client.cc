#include "http/client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace kiln::http {
namespace bhttp = beast::http;
using boost::system::error_code;

namespace {

auto Redirect(error_code& ec) { return net::redirect_error(net::use_awaitable, ec); }

Error NetError(std::string_view what, const error_code& ec) {
  Errc code = ec == beast::error::timeout ? Errc::kTimeout : Errc::kUnavailable;
  std::string msg(what);
  msg.append(": ").append(ec == beast::error::timeout ? "timed out" : ec.message());
  return Error(code, std::move(msg));
}

}  // namespace

std::string_view ClientResponse::Header(std::string_view name) const {
  auto it = headers.find(beast::string_view(name.data(), name.size()));
  if (it == headers.end()) return {};
  return {it->value().data(), it->value().size()};
}

ClientConnection::ClientConnection(tcp::socket socket) : stream_(std::move(socket)) {
  error_code ignored;
  stream_.socket().set_option(tcp::no_delay(true), ignored);
  buffer_.reserve(64 * 1024);
}

ClientConnection::ClientConnection(ClientConnection&&) noexcept = default;
ClientConnection::~ClientConnection() = default;

Task<Result<ClientConnection>> ClientConnection::Connect(const std::string& host, uint16_t port,
                                                         std::chrono::milliseconds timeout) {
  auto executor = co_await net::this_coro::executor;
  tcp::resolver resolver(executor);
  error_code ec;
  auto endpoints = co_await resolver.async_resolve(host, std::to_string(port), Redirect(ec));
  if (ec) co_return Unexpected(NetError("resolve " + host, ec));
  beast::tcp_stream stream(executor);
  stream.expires_after(timeout);
  co_await stream.async_connect(endpoints, Redirect(ec));
  stream.expires_never();
  if (ec) {
    co_return Unexpected(NetError("connect " + host + ":" + std::to_string(port), ec));
  }
  co_return ClientConnection(stream.release_socket());
}

Task<Result<ClientConnection>> ClientConnection::ConnectFd(UniqueFd fd, const std::string& address,
                                                           uint16_t port,
                                                           std::chrono::milliseconds timeout) {
  auto executor = co_await net::this_coro::executor;
  error_code ec;
  auto addr = net::ip::make_address(address, ec);
  if (ec) co_return Unexpected(Error(Errc::kInvalidArgument, "bad address " + address));
  tcp::endpoint endpoint(addr, port);
  tcp::socket socket(executor);
  socket.assign(endpoint.protocol(), fd.get(), ec);
  if (ec) co_return Unexpected(NetError("adopt socket", ec));
  (void)fd.release();
  beast::tcp_stream stream(std::move(socket));
  stream.expires_after(timeout);
  co_await stream.async_connect(endpoint, Redirect(ec));
  stream.expires_never();
  if (ec) {
    co_return Unexpected(NetError("connect " + address + ":" + std::to_string(port), ec));
  }
  co_return ClientConnection(stream.release_socket());
}

Task<Status> ClientConnection::WriteRequest(ClientRequest& request,
                                            std::chrono::milliseconds timeout) {
  if (!reusable_) co_return Unexpected(Error(Errc::kFailedPrecondition, "connection is closed"));
  if (parser_ && !parser_->is_done()) {
    reusable_ = false;
    co_return Unexpected(Error(Errc::kFailedPrecondition, "previous response not read"));
  }
  bhttp::request<bhttp::string_body> req{request.method, request.target, 11};
  for (const auto& f : request.headers) req.set(f.name_string(), f.value());
  if (req.find(bhttp::field::host) == req.end()) req.set(bhttp::field::host, "localhost");
  if (!request.body.empty() && req.find(bhttp::field::content_type) == req.end()) {
    req.set(bhttp::field::content_type, request.content_type);
  }
  req.body() = std::move(request.body);
  req.keep_alive(true);
  req.prepare_payload();
  error_code ec;
  stream_.expires_after(timeout);
  co_await bhttp::async_write(stream_, req, Redirect(ec));
  stream_.expires_never();
  if (ec) {
    reusable_ = false;
    co_return Unexpected(NetError("send request", ec));
  }
  co_return Status();
}

std::optional<uint64_t> ClientConnection::response_content_length() const {
  if (!parser_) return std::nullopt;
  auto len = parser_->content_length();
  return len ? std::optional<uint64_t>(*len) : std::nullopt;
}

bool ClientConnection::response_done() const { return !parser_ || parser_->is_done(); }

Task<Result<ClientResponse>> ClientConnection::ReadResponseHead(std::chrono::milliseconds timeout) {
  for (;;) {
    parser_ = std::make_unique<bhttp::response_parser<bhttp::buffer_body>>();
    parser_->body_limit((std::numeric_limits<std::uint64_t>::max)());
    error_code ec;
    if (timeout.count() > 0) stream_.expires_after(timeout);
    co_await bhttp::async_read_header(stream_, buffer_, *parser_, Redirect(ec));
    stream_.expires_never();
    if (ec) {
      reusable_ = false;
      co_return Unexpected(NetError("read response", ec));
    }
    unsigned status = parser_->get().result_int();
    if (status >= 100 && status < 200 && status != 101) continue;  // interim response
    break;
  }
  ClientResponse out;
  const auto& msg = parser_->get();
  out.status = msg.result_int();
  for (const auto& f : msg.base()) out.headers.insert(f.name_string(), f.value());
  if (!msg.keep_alive()) reusable_ = false;
  co_return out;
}

Task<Result<std::string>> ClientConnection::ReadSome(size_t max,
                                                     std::chrono::milliseconds timeout) {
  std::string out;
  if (!parser_ || parser_->is_done()) co_return out;
  out.resize(max);
  while (!parser_->is_done()) {
    parser_->get().body().data = out.data();
    parser_->get().body().size = out.size();
    error_code ec;
    if (timeout.count() > 0) stream_.expires_after(timeout);
    co_await bhttp::async_read_some(stream_, buffer_, *parser_, Redirect(ec));
    stream_.expires_never();
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec) {
      reusable_ = false;
      co_return Unexpected(NetError("read response body", ec));
    }
    size_t got = out.size() - parser_->get().body().size;
    if (got > 0) {
      out.resize(got);
      co_return out;
    }
  }
  out.clear();
  co_return out;
}

Task<Result<ClientResponse>> ClientConnection::SendForStream(ClientRequest request,
                                                             std::chrono::milliseconds timeout) {
  KILN_CO_TRY(co_await WriteRequest(request, timeout));
  co_return co_await ReadResponseHead(timeout);
}

Task<Result<ClientResponse>> ClientConnection::Send(ClientRequest request,
                                                    std::chrono::milliseconds timeout,
                                                    size_t body_limit) {
  KILN_CO_ASSIGN_OR_RETURN(ClientResponse response, co_await SendForStream(std::move(request), timeout));
  for (;;) {
    auto piece = co_await ReadSome(64 * 1024, timeout);
    if (!piece) co_return Unexpected(std::move(piece).error());
    if (piece->empty()) break;
    if (response.body.size() + piece->size() > body_limit) {
      reusable_ = false;
      co_return Unexpected(Error(Errc::kResourceExhausted, "response body too large"));
    }
    response.body.append(*piece);
  }
  co_return response;
}

}  // namespace kiln::http
