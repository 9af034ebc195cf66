#include "cli/process_client.h"

#include "http/connect.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

constexpr size_t kReadPiece = 64 * 1024;

bool IsConnectJson(std::string_view content_type) {
  return content_type.starts_with("application/connect+json");
}

std::string Path(std::string_view method) {
  return "/process.Process/" + std::string(method);
}

}  // namespace

ProcessClient::ProcessClient(KilndClient& kilnd, SandboxAccess sandbox,
                             std::optional<std::string> user)
    : kilnd_(kilnd), sandbox_(std::move(sandbox)), user_(std::move(user)) {}

http::Task<Status> ProcessClient::Start(const json& request,
                                        std::optional<std::chrono::milliseconds> timeout) {
  KILN_CO_ASSIGN_OR_RETURN(http::ClientConnection conn, co_await kilnd_.Connect());
  stream_.emplace(std::move(conn));
  http::ClientRequest req = kilnd_.EnvdRequest(sandbox_, http::Verb::post, Path("Start"), user_);
  req.content_type = "application/connect+json";
  req.headers.set("Connect-Protocol-Version", "1");
  req.headers.set("Keepalive-Ping-Interval", "50");
  if (timeout) req.headers.set("Connect-Timeout-Ms", std::to_string(timeout->count()));
  req.body = http::connect::EncodeEnvelope(0, http::connect::Dump(request));
  KILN_CO_ASSIGN_OR_RETURN(http::ClientResponse head,
                           co_await stream_->SendForStream(std::move(req), kCallTimeout));
  if (head.status != 200) {
    // Error bodies are small; read what there is for the message.
    for (int i = 0; i < 16 && head.body.size() < 64 * 1024; ++i) {
      auto piece = co_await stream_->ReadSome(kReadPiece, kCallTimeout);
      if (!piece || piece->empty()) break;
      head.body += *piece;
    }
    co_return Unexpected(ResponseError(head));
  }
  if (!IsConnectJson(head.Header("content-type"))) {
    co_return Fail(Errc::kInternal, "process start: unexpected content type \"" +
                                        std::string(head.Header("content-type")) + "\"");
  }
  co_return Status();
}

http::Task<Result<std::optional<ProcessEvent>>> ProcessClient::Next() {
  if (!stream_ || stream_done_) co_return std::optional<ProcessEvent>();
  for (;;) {
    KILN_CO_ASSIGN_OR_RETURN(auto frame, decoder_.Next());
    if (frame) {
      if (frame->flags & http::connect::kFlagEndStream) {
        stream_done_ = true;
        KILN_CO_TRY(ParseEndStream(frame->payload));
        co_return std::optional<ProcessEvent>();
      }
      KILN_CO_ASSIGN_OR_RETURN(ProcessEvent ev, ParseProcessEvent(frame->payload));
      co_return std::optional<ProcessEvent>(std::move(ev));
    }
    // No deadline: envd sends keepalives, and a command may legitimately stay silent.
    KILN_CO_ASSIGN_OR_RETURN(std::string piece,
                             co_await stream_->ReadSome(kReadPiece, std::chrono::milliseconds(0)));
    if (piece.empty()) {
      stream_done_ = true;
      co_return Fail(Errc::kUnavailable, "the process stream ended early (sandbox gone?)");
    }
    decoder_.Feed(piece);
  }
}

http::Task<Result<http::ClientResponse>> ProcessClient::UnaryOn(http::ClientConnection& conn,
                                                                std::string_view method,
                                                                const std::string& body) {
  http::ClientRequest req = kilnd_.EnvdRequest(sandbox_, http::Verb::post, Path(method), user_);
  req.content_type = "application/json";
  req.headers.set("Connect-Protocol-Version", "1");
  req.body = body;
  co_return co_await conn.Send(std::move(req), kCallTimeout, 1 << 20);
}

http::Task<Status> ProcessClient::Unary(std::string_view method, json request) {
  std::string body = http::connect::Dump(request);
  std::optional<http::ClientConnection> own;
  http::ClientConnection* conn = nullptr;
  bool kept = !unary_busy_;
  if (kept) {
    if (!unary_ || !unary_->reusable()) {
      unary_.reset();
      KILN_CO_ASSIGN_OR_RETURN(http::ClientConnection c, co_await kilnd_.Connect());
      unary_.emplace(std::move(c));
    }
    conn = &*unary_;
    unary_busy_ = true;
  } else {
    KILN_CO_ASSIGN_OR_RETURN(http::ClientConnection c, co_await kilnd_.Connect());
    own.emplace(std::move(c));
    conn = &*own;
  }
  auto res = co_await UnaryOn(*conn, method, body);
  if (kept) unary_busy_ = false;
  if (!res) co_return Unexpected(std::move(res).error().Wrap(method));
  if (res->status != 200) co_return Unexpected(ResponseError(*res).Wrap(method));
  co_return Status();
}

}  // namespace kiln::cli
