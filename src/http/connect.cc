#include "http/connect.h"

#include <array>
#include <charconv>

namespace kiln::http::connect {
namespace {

using nlohmann::json;

struct CodeInfo {
  Code code;
  std::string_view name;
  unsigned status;
};

constexpr std::array<CodeInfo, 16> kCodes = {{
    {Code::kCanceled, "canceled", 499},
    {Code::kUnknown, "unknown", 500},
    {Code::kInvalidArgument, "invalid_argument", 400},
    {Code::kDeadlineExceeded, "deadline_exceeded", 504},
    {Code::kNotFound, "not_found", 404},
    {Code::kAlreadyExists, "already_exists", 409},
    {Code::kPermissionDenied, "permission_denied", 403},
    {Code::kResourceExhausted, "resource_exhausted", 429},
    {Code::kFailedPrecondition, "failed_precondition", 400},
    {Code::kAborted, "aborted", 409},
    {Code::kOutOfRange, "out_of_range", 400},
    {Code::kUnimplemented, "unimplemented", 501},
    {Code::kInternal, "internal", 500},
    {Code::kUnavailable, "unavailable", 503},
    {Code::kDataLoss, "data_loss", 500},
    {Code::kUnauthenticated, "unauthenticated", 401},
}};

const CodeInfo& Info(Code code) {
  for (const auto& c : kCodes) {
    if (c.code == code) return c;
  }
  return kCodes[1];
}

bool IsJsonContentType(std::string_view ct, std::string_view want) {
  if (ct.size() < want.size()) return false;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(ct[i])) != want[i]) return false;
  }
  std::string_view rest = ct.substr(want.size());
  return rest.empty() || rest.front() == ';' || rest.front() == ' ';
}

Result<json> ParseMessage(std::string_view payload) {
  if (payload.empty()) return json::object();
  json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Fail(Errc::kInvalidArgument, "request is not valid JSON");
  if (!j.is_object()) return Fail(Errc::kInvalidArgument, "request must be a JSON object");
  return j;
}

Result<CallContext> MakeContext(const RequestHead& head) {
  auto timeout = ParseTimeout(head.Header("connect-timeout-ms"));
  if (!timeout) return Unexpected(std::move(timeout).error());
  CallContext ctx{head, std::nullopt};
  // 0 means no limit (what the SDK's `timeoutMs: 0` asks for, e.g. background commands).
  if (*timeout && (*timeout)->count() > 0) {
    ctx.deadline = std::chrono::steady_clock::now() + **timeout;
  }
  return ctx;
}

// Kept out of coroutine bodies: g++ 12 miscompiles braced json initializer lists there
// ("array used as initializer").
Response UnsupportedContentType() {
  return Response::Json(
      415, Dump(json{{"code", "unimplemented"}, {"message", "unsupported content type"}}));
}

Response UnaryError(const Error& e) {
  Code code = FromErrc(e.code());
  return Response::Json(HttpStatus(code), Dump(ErrorJson(e)));
}

}  // namespace

std::string_view CodeName(Code code) { return Info(code).name; }

std::optional<Code> CodeFromName(std::string_view name) {
  for (const auto& c : kCodes) {
    if (c.name == name) return c.code;
  }
  return std::nullopt;
}

unsigned HttpStatus(Code code) { return Info(code).status; }

Code FromErrc(Errc errc) {
  switch (errc) {
    case Errc::kInvalidArgument: return Code::kInvalidArgument;
    case Errc::kNotFound: return Code::kNotFound;
    case Errc::kAlreadyExists: return Code::kAlreadyExists;
    case Errc::kPermissionDenied: return Code::kPermissionDenied;
    case Errc::kUnauthenticated: return Code::kUnauthenticated;
    case Errc::kResourceExhausted: return Code::kResourceExhausted;
    case Errc::kFailedPrecondition: return Code::kFailedPrecondition;
    case Errc::kUnavailable: return Code::kUnavailable;
    case Errc::kTimeout: return Code::kDeadlineExceeded;
    case Errc::kCanceled: return Code::kCanceled;
    case Errc::kUnimplemented: return Code::kUnimplemented;
    case Errc::kInternal: return Code::kInternal;
  }
  return Code::kUnknown;
}

std::string EncodeEnvelope(uint8_t flags, std::string_view payload) {
  std::string out;
  out.reserve(5 + payload.size());
  uint32_t n = static_cast<uint32_t>(payload.size());
  out += static_cast<char>(flags);
  out += static_cast<char>((n >> 24) & 0xff);
  out += static_cast<char>((n >> 16) & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  out += static_cast<char>(n & 0xff);
  out += payload;
  return out;
}

Result<Envelope> DecodeSingleEnvelope(std::string_view body) {
  if (body.size() < 5) return Fail(Errc::kInvalidArgument, "request envelope is truncated");
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(body[i])); };
  Envelope env;
  env.flags = static_cast<uint8_t>(b(0));
  uint32_t len = (b(1) << 24) | (b(2) << 16) | (b(3) << 8) | b(4);
  if (env.flags & kFlagCompressed) {
    return Fail(Errc::kUnimplemented, "compressed request messages are not supported");
  }
  if (env.flags & kFlagEndStream) {
    return Fail(Errc::kInvalidArgument, "request envelope has the end-stream flag");
  }
  if (len != body.size() - 5) {
    return Fail(Errc::kInvalidArgument,
                "request envelope length " + std::to_string(len) + " does not match the body (" +
                    std::to_string(body.size() - 5) + " bytes)");
  }
  env.payload = std::string(body.substr(5));
  return env;
}

json ErrorJson(const Error& error) {
  return json{{"code", CodeName(FromErrc(error.code()))}, {"message", error.message()}};
}

Result<std::optional<std::chrono::milliseconds>> ParseTimeout(std::string_view header) {
  if (header.empty()) return std::optional<std::chrono::milliseconds>();
  if (header.size() > 10) return Fail(Errc::kInvalidArgument, "Connect-Timeout-Ms is too long");
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(header.data(), header.data() + header.size(), v);
  if (ec != std::errc() || ptr != header.data() + header.size()) {
    return Fail(Errc::kInvalidArgument, "Connect-Timeout-Ms is not a number");
  }
  return std::optional<std::chrono::milliseconds>(std::chrono::milliseconds(v));
}

std::chrono::seconds KeepaliveInterval(const RequestHead& head, std::chrono::seconds fallback) {
  std::string_view v = head.Header("keepalive-ping-interval");
  uint32_t secs = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || secs == 0) return fallback;
  return std::chrono::seconds(std::min<uint32_t>(secs, 24 * 3600));
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Task<Status> ServerStream::EnsureStarted() {
  if (started_) co_return Status();
  started_ = true;
  Fields headers;
  headers.set(beast::http::field::content_type, "application/connect+json");
  co_return co_await ex_.StartStream(200, std::move(headers));
}

Task<Status> ServerStream::Send(const json& message) {
  if (ended_) co_return Fail(Errc::kFailedPrecondition, "stream already ended");
  KILN_CO_TRY(co_await EnsureStarted());
  co_return co_await ex_.WriteStream(EncodeEnvelope(0, Dump(message)));
}

Task<Status> ServerStream::End(const Error* error) {
  if (ended_) co_return Status();
  ended_ = true;
  KILN_CO_TRY(co_await EnsureStarted());
  json payload = json::object();
  if (error) payload["error"] = ErrorJson(*error);
  KILN_CO_TRY(co_await ex_.WriteStream(EncodeEnvelope(kFlagEndStream, Dump(payload))));
  co_return co_await ex_.FinishStream();
}

namespace {

Task<void> ServeUnary(Exchange& ex, const UnaryFn& fn) {
  const RequestHead& head = ex.request();
  if (!IsJsonContentType(head.Header(beast::http::field::content_type), "application/json")) {
    co_await ex.Respond(UnsupportedContentType());
    co_return;
  }
  Result<std::string> body = co_await ex.ReadBody(kMaxRequestBytes);
  if (!body) {
    co_await ex.Respond(UnaryError(body.error()));
    co_return;
  }
  Result<CallContext> ctx = MakeContext(head);
  if (!ctx) {
    co_await ex.Respond(UnaryError(ctx.error()));
    co_return;
  }
  Result<json> req = ParseMessage(*body);
  if (!req) {
    co_await ex.Respond(UnaryError(req.error()));
    co_return;
  }
  Result<json> reply = co_await fn(*ctx, *req);
  if (!reply) {
    co_await ex.Respond(UnaryError(reply.error()));
    co_return;
  }
  co_await ex.Respond(Response::Json(200, Dump(*reply)));
}

// Reads and checks the single request message of a server-streaming call.
Task<Result<json>> ReadStreamRequest(Exchange& ex) {
  Result<std::string> body = co_await ex.ReadBody(kMaxRequestBytes);
  if (!body) co_return Unexpected(std::move(body).error());
  Result<Envelope> env = DecodeSingleEnvelope(*body);
  if (!env) co_return Unexpected(std::move(env).error());
  co_return ParseMessage(env->payload);
}

Task<void> ServeStream(Exchange& ex, const StreamFn& fn) {
  const RequestHead& head = ex.request();
  if (!IsJsonContentType(head.Header(beast::http::field::content_type),
                         "application/connect+json")) {
    co_await ex.Respond(UnsupportedContentType());
    co_return;
  }
  ServerStream stream(ex);
  Result<json> req = co_await ReadStreamRequest(ex);
  Result<CallContext> ctx = MakeContext(head);
  const Error* failure = !req ? &req.error() : !ctx ? &ctx.error() : nullptr;
  if (failure) {
    (void)co_await stream.End(failure);
    co_return;
  }
  Status st = co_await fn(*ctx, *req, stream);
  if (!stream.ended()) (void)co_await stream.End(st ? nullptr : &st.error());
}

}  // namespace

void AddUnary(Router& router, std::string path, UnaryFn fn) {
  router.Add(Verb::post, std::move(path),
             [fn = std::move(fn)](Exchange& ex) { return ServeUnary(ex, fn); });
}

void AddServerStream(Router& router, std::string path, StreamFn fn) {
  router.Add(Verb::post, std::move(path),
             [fn = std::move(fn)](Exchange& ex) { return ServeStream(ex, fn); });
}

}  // namespace kiln::http::connect
