#pragma once

// The sandbox proxy (DESIGN.md §1, e2b-compat.md §1.5): requests that carry
// E2b-Sandbox-Id/E2b-Sandbox-Port headers, or whose Host is "<port>-<id>.<domain>", go to
// that port inside the sandbox. Bodies stream both ways; the connection to the sandbox is
// a socket made inside its network namespace, so sandboxes need no routable address.

#include <cstdint>
#include <optional>
#include <string>

#include "http/client.h"
#include "http/server.h"
#include "kilnd/orchestrator/manager.h"

namespace kiln::kilnd {

struct ProxyTarget {
  std::string sandbox_id;
  uint16_t port = 0;
};

// Where a request should go: nullopt for the control API. A request with only one of the
// two routing headers, or a bad port, is still a sandbox request (answered with 400).
std::optional<Result<ProxyTarget>> RouteRequest(const http::RequestHead& head);

class Proxy {
 public:
  explicit Proxy(SandboxManager& manager) : manager_(manager) {}

  http::Task<void> Handle(http::Exchange& ex, Result<ProxyTarget> target);

 private:
  http::Task<void> Relay(http::Exchange& ex, http::ClientConnection& conn, const std::string& id);

  SandboxManager& manager_;
};

}  // namespace kiln::kilnd
