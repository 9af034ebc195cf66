#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "http/server.h"

// Connect-RPC over HTTP/1.1 with the JSON codec: unary calls (application/json) and
// server-streaming calls (application/connect+json, enveloped frames, end-stream frame).
namespace kiln::http::connect {

enum class Code {
  kCanceled,
  kUnknown,
  kInvalidArgument,
  kDeadlineExceeded,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kResourceExhausted,
  kFailedPrecondition,
  kAborted,
  kOutOfRange,
  kUnimplemented,
  kInternal,
  kUnavailable,
  kDataLoss,
  kUnauthenticated,
};

// snake_case wire name, e.g. "not_found".
std::string_view CodeName(Code code);
std::optional<Code> CodeFromName(std::string_view name);
// HTTP status of a unary error with this code.
unsigned HttpStatus(Code code);
Code FromErrc(Errc errc);

constexpr uint8_t kFlagCompressed = 0x01;
constexpr uint8_t kFlagEndStream = 0x02;

struct Envelope {
  uint8_t flags = 0;
  std::string payload;
};

std::string EncodeEnvelope(uint8_t flags, std::string_view payload);
// Parses a request body that must be exactly one uncompressed message envelope.
Result<Envelope> DecodeSingleEnvelope(std::string_view body);

// {"code":"not_found","message":"..."}
nlohmann::json ErrorJson(const Error& error);
// Parses a Connect-Timeout-Ms value (1 to 10 digits). nullopt when absent, error if malformed.
Result<std::optional<std::chrono::milliseconds>> ParseTimeout(std::string_view header);
// Keepalive-Ping-Interval (seconds, capped at a day); `fallback` when absent or not a
// positive number.
std::chrono::seconds KeepaliveInterval(const RequestHead& head, std::chrono::seconds fallback);

// Serializes a message; invalid UTF-8 in strings is replaced, never thrown.
std::string Dump(const nlohmann::json& j);

// What a handler knows about its call.
struct CallContext {
  const RequestHead& head;
  // From Connect-Timeout-Ms (none when absent or 0); the handler must finish (and for
  // process Start, end the process) by then.
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

// The response side of a server-streaming call. The 200 response starts with the first
// Send() or with End(). Not thread-safe.
class ServerStream {
 public:
  explicit ServerStream(Exchange& ex) : ex_(ex) {}
  // Sends one message frame. Fails once the client is gone.
  Task<Status> Send(const nlohmann::json& message);
  // Sends the end-stream frame: {} on success, {"error":{...}} otherwise.
  Task<Status> End(const Error* error);
  bool ended() const { return ended_; }

 private:
  Task<Status> EnsureStarted();
  Exchange& ex_;
  bool started_ = false;
  bool ended_ = false;
};

using UnaryFn = std::function<Task<Result<nlohmann::json>>(const CallContext&, const nlohmann::json&)>;
// Returning an error ends the stream with it; returning success ends it with {}.
using StreamFn =
    std::function<Task<Status>(const CallContext&, const nlohmann::json&, ServerStream&)>;

// Largest request message accepted.
constexpr size_t kMaxRequestBytes = 8 * 1024 * 1024;

void AddUnary(Router& router, std::string path, UnaryFn fn);
void AddServerStream(Router& router, std::string path, StreamFn fn);

}  // namespace kiln::http::connect
