#include "envd/agent.h"

#include "base/encoding.h"
#include "envd/control_routes.h"
#include "envd/files/files_routes.h"
#include "envd/filesystem/filesystem_service.h"
#include "envd/process/process_service.h"

namespace kiln::envd {
namespace {

// Routes reachable without X-Access-Token: /health, the /files routes (they take a URL
// signature instead and check the token themselves) and /init (checks it itself).
bool ExemptFromToken(const http::RequestHead& head) {
  return head.path == "/health" || head.path == "/files" || head.path == "/init";
}

}  // namespace

http::Response UnauthorizedResponse() {
  return http::Response::JsonError(
      401,
      "unauthorized access, please provide a valid access token or method signing if supported");
}

Agent::Agent(boost::asio::io_context& io, AgentState initial)
    : io_(io), state_(std::move(initial)) {
  process_ = std::make_unique<ProcessService>(io_, state_);
  filesystem_ = std::make_unique<FilesystemService>(io_, state_);
  files_ = std::make_unique<FilesRoutes>(io_, state_);
  control_ = std::make_unique<ControlRoutes>(io_, state_);
  process_->Register(router_);
  filesystem_->Register(router_);
  files_->Register(router_);
  control_->Register(router_);
  // SECURITY: every request but the exempt routes must carry the sandbox's access token.
  router_.SetFilter([this](const http::RequestHead& head) -> std::optional<http::Response> {
    if (!state_.access_token || ExemptFromToken(head)) return std::nullopt;
    if (ConstantTimeEquals(head.Header("x-access-token"), *state_.access_token)) {
      return std::nullopt;
    }
    return UnauthorizedResponse();
  });
}

Agent::~Agent() = default;

ChildReaper& Agent::reaper() { return process_->reaper(); }

}  // namespace kiln::envd
