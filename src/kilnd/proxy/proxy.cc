#include "kilnd/proxy/proxy.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cstring>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/scope_exit.h"
#include "http/client.h"

namespace kiln::kilnd {
using json = nlohmann::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
using std::chrono::milliseconds;

namespace {

constexpr uint16_t kAgentPort = 49983;
// A proxied stream (a command's output, a directory watch) may be quiet for a long time.
constexpr milliseconds kIdleTimeout = std::chrono::hours(2);
constexpr milliseconds kConnectTimeout{5000};

bool IsDigits(std::string_view s) {
  return !s.empty() && s.size() <= 5 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool IsId(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  });
}

http::Response SandboxError(unsigned status, const std::string& id, std::string_view message) {
  json j = json::object();
  j["sandboxId"] = id;
  j["message"] = std::string(message);
  j["code"] = status;
  return http::Response::Json(status, j.dump(-1, ' ', false, json::error_handler_t::replace));
}

bool IsHopByHop(std::string_view name) {
  static constexpr std::string_view kHop[] = {"connection",        "keep-alive", "proxy-connection",
                                              "transfer-encoding", "te",         "trailer",
                                              "upgrade",           "content-length",
                                              "expect"};
  for (auto h : kHop) {
    if (name.size() == h.size() &&
        std::equal(name.begin(), name.end(), h.begin(),
                   [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; })) {
      return true;
    }
  }
  return false;
}

// envd routes that only the control plane may call.
bool IsAgentControlPath(std::string_view path) {
  static constexpr std::string_view kControl[] = {"/init", "/freeze", "/unfreeze",
                                                  "/collapse", "/fsfreeze", "/fsthaw"};
  for (auto c : kControl) {
    if (path == c) return true;
  }
  return false;
}

std::string RequestHeadText(const http::RequestHead& head, bool chunked,
                            std::optional<uint64_t> length) {
  std::string out;
  out.append(std::string_view(beast::http::to_string(head.method)));
  out.append(" ").append(head.target).append(" HTTP/1.1\r\n");
  for (const auto& f : head.headers) {
    std::string_view name(f.name_string().data(), f.name_string().size());
    if (IsHopByHop(name)) continue;
    out.append(name).append(": ");
    out.append(std::string_view(f.value().data(), f.value().size())).append("\r\n");
  }
  if (chunked) out.append("Transfer-Encoding: chunked\r\n");
  if (length) out.append("Content-Length: ").append(std::to_string(*length)).append("\r\n");
  out.append("Connection: close\r\n\r\n");
  return out;
}

}  // namespace

std::optional<Result<ProxyTarget>> RouteRequest(const http::RequestHead& head) {
  std::string_view id = head.Header("e2b-sandbox-id");
  std::string_view port = head.Header("e2b-sandbox-port");
  if (!id.empty() || !port.empty()) {
    if (!IsId(id)) {
      return Result<ProxyTarget>(Fail(Errc::kInvalidArgument, "invalid or missing E2b-Sandbox-Id header"));
    }
    if (!IsDigits(port) || std::stoul(std::string(port)) > 65535 || std::stoul(std::string(port)) == 0) {
      return Result<ProxyTarget>(Fail(Errc::kInvalidArgument, "invalid or missing E2b-Sandbox-Port header"));
    }
    return Result<ProxyTarget>(ProxyTarget{std::string(id), static_cast<uint16_t>(std::stoul(std::string(port)))});
  }
  // Host "<port>-<id>.<domain>[:port]".
  std::string_view host = head.Header(beast::http::field::host);
  size_t dot = host.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  std::string_view label = host.substr(0, dot);
  size_t dash = label.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  std::string_view p = label.substr(0, dash);
  std::string_view rest = label.substr(dash + 1);
  std::string_view sid = rest.substr(0, rest.find('-'));
  if (!IsDigits(p) || !IsId(sid)) return std::nullopt;
  unsigned long n = std::stoul(std::string(p));
  if (n == 0 || n > 65535) {
    return Result<ProxyTarget>(Fail(Errc::kInvalidArgument, "invalid port in host"));
  }
  return Result<ProxyTarget>(ProxyTarget{std::string(sid), static_cast<uint16_t>(n)});
}

http::Task<void> Proxy::Handle(http::Exchange& ex, Result<ProxyTarget> target) {
  if (!target) {
    ex.set_keep_alive(false);
    co_return (void)co_await ex.Respond(http::Response::JsonError(400, target.error().message()));
  }
  const http::RequestHead& head = ex.request();
  const std::string& id = target->sandbox_id;
  if (target->port == kAgentPort && IsAgentControlPath(head.path)) {
    co_return (void)co_await ex.Respond(http::Response::JsonError(
        404, "the path " + head.path + " is reserved for the control plane"));
  }
  auto instance = manager_.RunningInstance(id);
  if (!instance && instance.error().code() == Errc::kNotFound) {
    // A paused sandbox created with autoResume wakes up for this request.
    if (co_await manager_.ResumeForTraffic(id)) instance = manager_.RunningInstance(id);
  }
  if (!instance) {
    unsigned status = instance.error().code() == Errc::kUnavailable ? 409 : 502;
    co_return (void)co_await ex.Respond(SandboxError(status, id, instance.error().message()));
  }
  // A sandbox that dies while this request waits on it (killed at its timeout, say) ends the
  // request, also while it connects: a VM's end vanishes with QEMU, without a FIN or RST, and a
  // connect to a VM that is gone would wait for its whole timeout. The exit shuts the socket
  // down (through a duplicate of it); a connecting TCP socket then fails at once.
  auto exit_fd = (*instance)->ExitFd();
  if (!exit_fd && exit_fd.error().code() == Errc::kFailedPrecondition) {
    co_return (void)co_await ex.Respond(SandboxError(502, id, "The sandbox is not running"));
  }
  if (!exit_fd && exit_fd.error().code() != Errc::kUnimplemented) {
    KILN_LOG(Warn, "proxy exit watch", {"sandbox", id}, {"error", exit_fd.error().message()});
    co_return (void)co_await ex.Respond(SandboxError(502, id, "The sandbox is not reachable"));
  }
  auto fd = (*instance)->OpenSocket();
  if (!fd) {
    KILN_LOG(Warn, "proxy socket", {"sandbox", id}, {"error", fd.error().message()});
    co_return (void)co_await ex.Respond(SandboxError(502, id, "The sandbox is not reachable"));
  }
  std::unique_ptr<asio::posix::stream_descriptor> exit_watch;
  if (exit_fd) {
    auto socket = std::make_shared<UniqueFd>(fcntl(fd->get(), F_DUPFD_CLOEXEC, 0));
    if (!*socket) {
      KILN_LOG(Warn, "proxy socket", {"sandbox", id}, {"error", strerror(errno)});
      co_return (void)co_await ex.Respond(SandboxError(502, id, "The sandbox is not reachable"));
    }
    exit_watch = std::make_unique<asio::posix::stream_descriptor>(
        co_await asio::this_coro::executor, exit_fd->release());
    exit_watch->async_wait(asio::posix::stream_descriptor::wait_read,
                           [socket](const boost::system::error_code& ec) {
                             if (!ec) shutdown(socket->get(), SHUT_RDWR);
                           });
  }
  ScopeExit stop_watching([&exit_watch] {
    if (exit_watch) exit_watch->cancel();
  });
  const std::string address((*instance)->address());
  auto conn = co_await http::ClientConnection::ConnectFd(std::move(*fd), address, target->port,
                                                         kConnectTimeout);
  if (!conn) {
    co_return (void)co_await ex.Respond(
        SandboxError(502, id, "The sandbox is running but port is not open"));
  }
  auto& upstream = conn->stream();

  // Request: head, then the body as it arrives (re-chunked when it came chunked).
  bool has_length = head.headers.find(beast::http::field::content_length) != head.headers.end();
  bool chunked = !has_length && !ex.body_done();
  std::optional<uint64_t> length;
  if (has_length) {
    length = std::strtoull(std::string(head.Header(beast::http::field::content_length)).c_str(),
                           nullptr, 10);
  }
  std::string out = RequestHeadText(head, chunked, length);
  boost::system::error_code ec;
  for (;;) {
    upstream.expires_after(kIdleTimeout);
    co_await asio::async_write(upstream, asio::buffer(out),
                               asio::redirect_error(asio::use_awaitable, ec));
    upstream.expires_never();
    if (ec || (!chunked && !has_length)) break;
    if (chunked && out == "0\r\n\r\n") break;
    auto piece = co_await ex.ReadBodySome(64 * 1024);
    if (!piece) {
      ex.set_keep_alive(false);
      co_return;  // the client went away mid-body; dropping `conn` tells the sandbox
    }
    if (piece->empty()) {
      if (!chunked) break;
      out = "0\r\n\r\n";
      continue;
    }
    if (chunked) {
      char size[32];
      snprintf(size, sizeof size, "%zx\r\n", piece->size());
      out.assign(size).append(*piece).append("\r\n");
    } else {
      out = std::move(*piece);
    }
  }
  if (ec) {
    co_return (void)co_await ex.Respond(SandboxError(502, id, "The sandbox closed the connection"));
  }
  co_await Relay(ex, *conn, id);
}

http::Task<void> Proxy::Relay(http::Exchange& ex, http::ClientConnection& conn, const std::string& id) {
  // Response: status and headers, then the body piece by piece as the sandbox sends it.
  auto res = co_await conn.ReadResponseHead(milliseconds(0));
  if (!res) {
    co_return (void)co_await ex.Respond(SandboxError(502, id, "The sandbox closed the connection"));
  }
  http::Fields headers;
  for (const auto& f : res->headers) {
    std::string_view name(f.name_string().data(), f.name_string().size());
    if (!IsHopByHop(name)) headers.insert(f.name_string(), f.value());
  }
  if (res->status == 101) {
    co_return (void)co_await ex.Respond(SandboxError(502, id, "protocol upgrades are not supported"));
  }
  if (conn.response_done() || ex.request().method == http::Verb::head) {
    http::Response r;
    r.status = res->status;
    r.headers = std::move(headers);
    co_return (void)co_await ex.Respond(std::move(r));
  }
  if (!co_await ex.StartStream(res->status, std::move(headers), conn.response_content_length())) {
    ex.set_keep_alive(false);
    co_return;
  }
  for (;;) {
    auto piece = co_await conn.ReadSome(64 * 1024, kIdleTimeout);
    if (!piece) {
      // The sandbox side broke off mid-body: the client must not take it as complete.
      ex.set_keep_alive(false);
      co_return;
    }
    if (piece->empty()) break;
    // A client that left is noticed before the write (which would still succeed once after
    // its FIN), so the sandbox side learns of it one write sooner.
    if (ex.ClientGone() || !co_await ex.WriteStream(*piece)) {
      ex.set_keep_alive(false);
      co_return;
    }
  }
  (void)co_await ex.FinishStream();
}

}  // namespace kiln::kilnd
