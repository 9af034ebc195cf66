#include "cli/kilnd_client.h"

#include <cctype>
#include <nlohmann/json.hpp>

#include "base/encoding.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

Errc ErrcForStatus(unsigned status) {
  switch (status) {
    case 400: return Errc::kInvalidArgument;
    case 401: return Errc::kUnauthenticated;
    case 403: return Errc::kPermissionDenied;
    case 404: return Errc::kNotFound;
    case 409: return Errc::kFailedPrecondition;
    case 429: return Errc::kResourceExhausted;
    case 502:
    case 503: return Errc::kUnavailable;
    case 504: return Errc::kTimeout;
    default: return Errc::kInternal;
  }
}

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s.substr(0, 500));
}

std::string BodyMessage(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    auto m = j.find("message");
    if (m != j.end() && m->is_string() && !m->get_ref<const std::string&>().empty()) {
      auto c = j.find("code");
      // envd's Connect errors carry a string code ("not_found"), worth keeping.
      if (c != j.end() && c->is_string()) return c->get<std::string>() + ": " + m->get<std::string>();
      return m->get<std::string>();
    }
  }
  return Trim(body);
}

// Kept out of coroutine bodies (g++ 12 and braced initializers in coroutines).
Error Unreachable(const Endpoint& ep, const Error& e) {
  return Error(Errc::kUnavailable, "cannot reach kilnd at " + ep.url + " (" + e.message() +
                                       "); is it running? Start it with `sudo kiln up`, or "
                                       "point --api-url / E2B_API_URL at it");
}

}  // namespace

bool IsSandboxId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (unsigned char c : id) {
    if (!std::islower(c) && !std::isdigit(c)) return false;
  }
  return true;
}

bool IsHeaderSafe(std::string_view value) {
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

Error ResponseError(const http::ClientResponse& response) {
  std::string message = BodyMessage(response.body);
  std::string text = std::to_string(response.status);
  if (!message.empty()) text += ": " + message;
  if (response.status == 401 && message.find("API key") != std::string::npos) {
    text += " (set E2B_API_KEY or --api-key; create a key with `sudo kiln keys create`)";
  }
  return Error(ErrcForStatus(response.status), text);
}

std::string QueryEscape(std::string_view s) { return http::PercentEncode(s); }

KilndClient::KilndClient(Endpoint endpoint, std::string api_key)
    : endpoint_(std::move(endpoint)), api_key_(std::move(api_key)) {}

http::Task<Result<http::ClientConnection>> KilndClient::Connect() {
  auto conn = co_await http::ClientConnection::Connect(endpoint_.host, endpoint_.port,
                                                       std::chrono::seconds(10));
  if (!conn) co_return Unexpected(Unreachable(endpoint_, conn.error()));
  co_return std::move(*conn);
}

http::Task<Result<http::ClientResponse>> KilndClient::Call(http::Verb method, std::string path,
                                                           std::string body,
                                                           std::chrono::milliseconds timeout) {
  if (!conn_ || !conn_->reusable()) {
    conn_.reset();
    KILN_CO_ASSIGN_OR_RETURN(http::ClientConnection c, co_await Connect());
    conn_.emplace(std::move(c));
  }
  http::ClientRequest req;
  req.method = method;
  req.target = endpoint_.Target(path);
  req.headers.set(http::beast::http::field::host, endpoint_.host_header);
  req.headers.set(http::beast::http::field::accept, "application/json");
  req.headers.set(http::beast::http::field::user_agent, "kiln-cli");
  if (!api_key_.empty()) req.headers.set("X-API-Key", api_key_);
  if (method == http::Verb::post || method == http::Verb::put) {
    if (body.empty()) body = "{}";
  }
  req.body = std::move(body);
  auto res = co_await conn_->Send(std::move(req), timeout);
  if (!res) {
    conn_.reset();
    co_return Unexpected(Error(res.error().code(), "kilnd at " + endpoint_.url + ": " +
                                                       res.error().message()));
  }
  if (res->status < 200 || res->status >= 300) co_return Unexpected(ResponseError(*res));
  co_return std::move(*res);
}

http::Task<Result<SandboxAccess>> KilndClient::Access(const std::string& id) {
  // The id travels in a header: only what sandbox ids are made of (e2b-compat.md §1.5).
  if (!IsSandboxId(id)) co_return Fail(Errc::kInvalidArgument, "invalid sandbox ID \"" + id + "\"");
  KILN_CO_ASSIGN_OR_RETURN(http::ClientResponse res,
                           co_await Call(http::Verb::get, "/sandboxes/" + QueryEscape(id)));
  json j = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) co_return Fail(Errc::kInternal, "kilnd sent a malformed sandbox");
  SandboxAccess access{id, ""};
  if (auto t = j.find("envdAccessToken"); t != j.end() && t->is_string()) {
    access.token = t->get<std::string>();
  }
  if (!IsHeaderSafe(access.token)) co_return Fail(Errc::kInternal, "kilnd sent a malformed token");
  if (auto s = j.find("state"); s != j.end() && s->is_string() && *s == "paused") {
    co_return Fail(Errc::kFailedPrecondition,
                   "sandbox " + id + " is paused; resume it with `kiln sandbox resume " + id + "`");
  }
  co_return access;
}

http::ClientRequest KilndClient::EnvdRequest(const SandboxAccess& sandbox, http::Verb method,
                                             std::string path,
                                             const std::optional<std::string>& user) const {
  http::ClientRequest req;
  req.method = method;
  req.target = endpoint_.Target(path);
  req.headers.set(http::beast::http::field::host, endpoint_.host_header);
  req.headers.set(http::beast::http::field::user_agent, "kiln-cli");
  req.headers.set("E2b-Sandbox-Id", sandbox.id);
  req.headers.set("E2b-Sandbox-Port", std::to_string(kEnvdPort));
  if (!sandbox.token.empty()) req.headers.set("X-Access-Token", sandbox.token);
  if (user) {
    req.headers.set(http::beast::http::field::authorization, "Basic " + Base64Encode(*user + ":"));
  }
  return req;
}

}  // namespace kiln::cli
