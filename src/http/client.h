#pragma once

// HTTP/1.1 client on Boost.Beast with coroutines: kilnd talks to the agents in its sandboxes
// with it, and the kiln CLI to kilnd. One ClientConnection is one keep-alive connection;
// requests on it run one after another.

#include <boost/asio/any_io_executor.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "base/unique_fd.h"
#include "http/server.h"

namespace kiln::http {

struct ClientRequest {
  Verb method = Verb::get;
  std::string target = "/";
  Fields headers;  // Host defaults to "localhost"
  std::string body;
  // With a body and no Content-Type header, this one is sent.
  std::string content_type = "application/json";
};

struct ClientResponse {
  unsigned status = 0;
  Fields headers;
  std::string body;

  std::string_view Header(std::string_view name) const;
};

class ClientConnection {
 public:
  explicit ClientConnection(tcp::socket socket);
  ClientConnection(ClientConnection&&) noexcept;
  ~ClientConnection();

  // Resolves `host` (numeric addresses or names) and connects, within `timeout`.
  static Task<Result<ClientConnection>> Connect(const std::string& host, uint16_t port,
                                                std::chrono::milliseconds timeout);
  // Connects an already created socket (e.g. one made inside another network namespace)
  // to `address:port`; takes ownership of `fd`.
  static Task<Result<ClientConnection>> ConnectFd(UniqueFd fd, const std::string& address,
                                                  uint16_t port,
                                                  std::chrono::milliseconds timeout);

  // Sends a request and reads the whole response (body at most `body_limit` bytes).
  Task<Result<ClientResponse>> Send(ClientRequest request, std::chrono::milliseconds timeout,
                                    size_t body_limit = 16 << 20);

  // Streaming: sends a request, then reads the status and headers; the body follows in
  // pieces from ReadSome ("" at its end). Bodies of requests sent this way are buffered.
  Task<Result<ClientResponse>> SendForStream(ClientRequest request,
                                             std::chrono::milliseconds timeout);
  // The next piece of the response body, at most `max` bytes; an empty string at the end.
  Task<Result<std::string>> ReadSome(size_t max, std::chrono::milliseconds timeout);

  // Reads the status and headers of the next response (for requests written directly to
  // stream(), as the proxy does). 1xx interim responses are skipped.
  Task<Result<ClientResponse>> ReadResponseHead(std::chrono::milliseconds timeout);
  // The body length the current response announced, if any.
  std::optional<uint64_t> response_content_length() const;
  // True once the current response's body has been read (or it has none).
  bool response_done() const;

  bool reusable() const { return reusable_; }
  beast::tcp_stream& stream() { return stream_; }

 private:
  Task<Status> WriteRequest(ClientRequest& request, std::chrono::milliseconds timeout);

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::unique_ptr<beast::http::response_parser<beast::http::buffer_body>> parser_;
  bool reusable_ = true;
};

}  // namespace kiln::http
