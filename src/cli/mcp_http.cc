// kiln mcp over the Streamable HTTP transport (see mcp_server.h).

#include <signal.h>

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <random>

#include "base/encoding.h"
#include "cli/mcp_server.h"
#include "http/connect.h"

namespace kiln::cli::mcp {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;
using nlohmann::json;

namespace {

constexpr size_t kMaxBody = 64 << 20;
constexpr std::string_view kPath = "/mcp";
constexpr int kSessionNotFound = -32001;

http::Response JsonResponse(unsigned status, const json& body) {
  http::Response r = http::Response::Json(status, http::connect::Dump(body));
  r.headers.set(bhttp::field::cache_control, "no-store");
  return r;
}

http::Response RpcFailure(unsigned status, int code, std::string message) {
  return JsonResponse(status, RpcError(nullptr, code, std::move(message)));
}

http::Response MethodNotAllowed() {
  http::Response r = RpcFailure(405, kInvalidRequest,
                                "Method not allowed: POST a JSON-RPC message, or DELETE the session");
  r.headers.set(bhttp::field::allow, "POST, DELETE");
  return r;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Browsers send Origin; a page on another site must not drive a local MCP server (DNS
// rebinding). Clients that are not browsers send none.
bool OriginAllowed(std::string_view origin) {
  if (origin.empty()) return true;
  std::string o = Lower(origin);
  for (std::string_view scheme : {"http://", "https://"}) {
    if (!o.starts_with(scheme)) continue;
    std::string_view host = std::string_view(o).substr(scheme.size());
    if (host.starts_with("[::1]")) return host.size() == 5 || host[5] == ':';
    size_t colon = host.find(':');
    std::string_view name = host.substr(0, colon);
    return name == "localhost" || name == "127.0.0.1";
  }
  return false;
}

// One SSE event carrying the response, for clients that accept only text/event-stream.
bool WantsEventStream(std::string_view accept) {
  std::string a = Lower(accept);
  return a.find("text/event-stream") != std::string::npos &&
         a.find("application/json") == std::string::npos;
}

std::string SseEvent(const json& message) {
  return "event: message\ndata: " + http::connect::Dump(message) + "\n\n";
}

bool IsInitialize(const RpcMessage& m) {
  return m.kind == RpcMessage::Kind::kRequest && m.method == "initialize";
}

http::Fields EventStreamHeaders(const std::string& session_id) {
  http::Fields h;
  h.set(bhttp::field::content_type, "text/event-stream");
  h.set(bhttp::field::cache_control, "no-cache");
  if (!session_id.empty()) h.set("Mcp-Session-Id", session_id);
  return h;
}

}  // namespace

McpHttpServer::McpHttpServer(net::io_context& io, McpConfig config, HttpOptions options)
    : io_(io),
      config_(std::move(config)),
      options_(std::move(options)),
      server_(io, [this](http::Exchange& ex) { return Handle(ex); },
              http::ServerOptions{64 * 1024, std::chrono::seconds(640), /*cors=*/false}),
      reaper_(io) {}

McpHttpServer::~McpHttpServer() = default;

Status McpHttpServer::Listen() { return server_.Listen(options_.host, options_.port); }

void McpHttpServer::Start() {
  server_.Start();
  auto done = [](std::exception_ptr) {};
  net::co_spawn(io_, Reap(), std::move(done));
}

std::string McpHttpServer::NewSessionId() const {
  std::random_device rd;
  std::string bytes;
  for (int i = 0; i < 16; ++i) bytes += static_cast<char>(rd() & 0xff);
  return HexEncode(bytes);
}

http::Task<void> McpHttpServer::Reap() {
  // Often enough that an idle session ends within a quarter of the limit after it expires.
  auto period = std::max<std::chrono::seconds>(std::chrono::seconds(1), options_.session_idle / 4);
  period = std::min<std::chrono::seconds>(period, std::chrono::seconds(60));
  while (!closing_) {
    reaper_.expires_after(period);
    boost::system::error_code ec;
    co_await reaper_.async_wait(net::redirect_error(net::use_awaitable, ec));
    if (closing_) co_return;
    auto now = std::chrono::steady_clock::now();
    std::vector<std::shared_ptr<Entry>> expired;
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->second->in_flight == 0 && now - it->second->last_used > options_.session_idle) {
        expired.push_back(it->second);
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& e : expired) co_await e->session->Close();
  }
}

http::Task<void> McpHttpServer::CloseAll() {
  closing_ = true;
  reaper_.cancel();
  std::vector<std::shared_ptr<Entry>> all;
  for (auto& [id, e] : sessions_) all.push_back(e);
  sessions_.clear();
  for (auto& e : all) co_await e->session->Close();
}

http::Task<void> McpHttpServer::Handle(http::Exchange& ex) {
  const http::RequestHead& head = ex.request();
  if (head.path != kPath) {
    co_return (void)co_await ex.Respond(http::Response::JsonError(404, "not found; MCP is served at /mcp"));
  }
  if (!OriginAllowed(head.Header(bhttp::field::origin))) {
    co_return (void)co_await ex.Respond(RpcFailure(403, kInvalidRequest, "Forbidden: Origin not allowed"));
  }
  if (head.method == http::Verb::post) co_return co_await Post(ex);
  if (head.method == http::Verb::delete_) co_return co_await Delete(ex);
  co_await ex.Respond(MethodNotAllowed());
}

http::Task<void> McpHttpServer::Delete(http::Exchange& ex) {
  std::string id(ex.request().Header("Mcp-Session-Id"));
  auto it = sessions_.find(id);
  if (id.empty()) {
    co_return (void)co_await ex.Respond(
        RpcFailure(400, kInvalidRequest, "Bad Request: Mcp-Session-Id header is required"));
  }
  if (it == sessions_.end()) {
    co_return (void)co_await ex.Respond(RpcFailure(404, kSessionNotFound, "Session not found"));
  }
  std::shared_ptr<Entry> entry = it->second;
  sessions_.erase(it);
  co_await entry->session->Close();
  co_await ex.Respond(http::Response::Empty(200));
}

http::Task<void> McpHttpServer::Post(http::Exchange& ex) {
  auto body = co_await ex.ReadBody(kMaxBody);
  if (!body) {
    ex.set_keep_alive(false);
    co_return (void)co_await ex.Respond(
        RpcFailure(413, kParseError, "Parse error: " + body.error().message()));
  }
  if (closing_) {
    co_return (void)co_await ex.Respond(RpcFailure(503, kInternalError, "the server is stopping"));
  }
  ParsedRpc parsed = ParseRpc(*body);
  if (!parsed.message) co_return (void)co_await ex.Respond(JsonResponse(400, parsed.error_response));
  RpcMessage msg = std::move(*parsed.message);
  const http::RequestHead& head = ex.request();
  std::string version(head.Header("MCP-Protocol-Version"));
  if (!version.empty() && !SupportedProtocolVersion(version)) {
    co_return (void)co_await ex.Respond(RpcFailure(
        400, kInvalidRequest, "Bad Request: unsupported MCP-Protocol-Version " + version));
  }

  std::shared_ptr<Entry> entry;
  std::string session_id;
  bool fresh = false;
  if (IsInitialize(msg)) {
    entry = std::make_shared<Entry>();
    entry->session = std::make_shared<McpSession>(io_.get_executor(), config_);
    session_id = NewSessionId();
    fresh = true;
  } else {
    session_id = std::string(head.Header("Mcp-Session-Id"));
    if (session_id.empty()) {
      co_return (void)co_await ex.Respond(
          RpcFailure(400, kInvalidRequest, "Bad Request: Mcp-Session-Id header is required"));
    }
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) {
      co_return (void)co_await ex.Respond(RpcFailure(404, kSessionNotFound, "Session not found"));
    }
    entry = it->second;
  }
  entry->last_used = std::chrono::steady_clock::now();
  if (msg.kind != RpcMessage::Kind::kRequest) {
    (void)co_await entry->session->Handle(std::move(msg));
    co_return (void)co_await ex.Respond(http::Response::Empty(202));
  }
  json id = msg.id;
  ++entry->in_flight;
  std::optional<json> response;
  std::string thrown;
  try {
    response = co_await entry->session->Handle(std::move(msg));
  } catch (const std::exception& e) {
    thrown = e.what();
  }
  --entry->in_flight;
  entry->last_used = std::chrono::steady_clock::now();
  if (!response) response = RpcError(id, kInternalError, "Internal error: " + thrown);
  if (fresh) {
    if (response->contains("error")) {
      session_id.clear();  // a failed initialize opens no session
    } else {
      sessions_[session_id] = entry;
    }
  }
  if (WantsEventStream(head.Header(bhttp::field::accept))) {
    if (!co_await ex.StartStream(200, EventStreamHeaders(session_id))) co_return;
    std::string event = SseEvent(*response);
    if (!co_await ex.WriteStream(event)) co_return;
    (void)co_await ex.FinishStream();
    co_return;
  }
  http::Response r = JsonResponse(200, *response);
  if (!session_id.empty()) r.headers.set("Mcp-Session-Id", session_id);
  co_await ex.Respond(std::move(r));
}

int ServeHttp(const McpConfig& config, const HttpOptions& options, const Io& io) {
  net::io_context loop(1);
  auto server = std::make_unique<McpHttpServer>(loop, config, options);
  if (auto st = server->Listen(); !st) {
    PrintError(io.err, "mcp: listen on " + options.host + ":" + std::to_string(options.port) +
                           ": " + st.error().message());
    return 1;
  }
  std::string host = options.host.find(':') != std::string::npos ? "[" + options.host + "]" : options.host;
  std::string ready = "kiln mcp: listening on http://" + host + ":" + std::to_string(server->port()) +
                      std::string(kPath) + "\n";
  if (!WriteAll(io.out, ready)) return 1;
  server->Start();
  net::signal_set signals(loop, SIGINT, SIGTERM, SIGHUP);
  McpHttpServer* raw = server.get();
  auto on_closed = [&loop](std::exception_ptr) { loop.stop(); };
  auto on_signal = [&loop, raw, on_closed](boost::system::error_code ec, int) {
    if (ec) return;
    net::co_spawn(loop, raw->CloseAll(), on_closed);
  };
  signals.async_wait(on_signal);
  try {
    loop.run();
  } catch (const std::exception& e) {
    PrintError(io.err, std::string("mcp: internal error: ") + e.what());
    return 1;
  }
  // Connections still open hold requests in flight; they go with the loop, before the server.
  return 0;
}

}  // namespace kiln::cli::mcp
