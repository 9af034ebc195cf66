#pragma once

// The CLI's connection to kilnd: control API calls (X-API-Key, E2B error bodies) and the
// routing headers for sandbox traffic, which goes to the same origin (e2b-compat.md §1.5-1.6).
// Not thread-safe; used from one coroutine at a time on one io_context.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "cli/endpoint.h"
#include "http/client.h"

namespace kiln::cli {

inline constexpr uint16_t kEnvdPort = 49983;
inline constexpr std::chrono::milliseconds kCallTimeout{60000};

// What sandbox traffic needs: the id (routing) and the envd access token.
struct SandboxAccess {
  std::string id;
  std::string token;
};

class KilndClient {
 public:
  KilndClient(Endpoint endpoint, std::string api_key);

  const Endpoint& endpoint() const { return endpoint_; }

  // A new connection to kilnd. kUnavailable with a hint when kilnd cannot be reached.
  http::Task<Result<http::ClientConnection>> Connect();

  // A control API call on a kept-alive connection; `path` is below the base URL ("/v2/...").
  // Returns 2xx responses; any other status becomes an Error "<status>: <message>" (see
  // ResponseError).
  http::Task<Result<http::ClientResponse>> Call(http::Verb method, std::string path,
                                                std::string body = {},
                                                std::chrono::milliseconds timeout = kCallTimeout);

  // GET /sandboxes/{id}: the access token for sandbox traffic. kFailedPrecondition when the
  // sandbox is paused.
  http::Task<Result<SandboxAccess>> Access(const std::string& id);

  // A request to envd inside `sandbox` through kilnd's proxy: routing headers, access token,
  // Host, and `Authorization: Basic base64("user:")` when `user` is set.
  http::ClientRequest EnvdRequest(const SandboxAccess& sandbox, http::Verb method,
                                  std::string path, const std::optional<std::string>& user) const;

 private:
  Endpoint endpoint_;
  std::string api_key_;
  std::optional<http::ClientConnection> conn_;
};

// The error for a non-2xx response from kilnd or envd: the body's "message" (E2B and envd
// bodies are {"code": ..., "message": ...}) or, failing that, its text, prefixed with the
// status: "404: sandbox \"x\" not found". The Errc follows the status (404 -> kNotFound, ...).
Error ResponseError(const http::ClientResponse& response);

// Sandbox ids are [a-z0-9]+ (at most 64 characters).
bool IsSandboxId(std::string_view id);
// No control characters (CR/LF would split a header).
bool IsHeaderSafe(std::string_view value);

// URL query value encoding.
std::string QueryEscape(std::string_view s);

}  // namespace kiln::cli
