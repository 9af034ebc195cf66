#pragma once

// The E2B control REST API (e2b-compat.md §2): create/connect/list/get/kill sandboxes, set
// timeouts, pause, metrics. Parses and validates, maps errors to {"code","message"} bodies
// and never touches a runtime directly (everything goes through the SandboxManager).

#include <string>

#include "http/server.h"
#include "kilnd/orchestrator/api_keys.h"
#include "kilnd/orchestrator/manager.h"

namespace kiln::kilnd {

struct ApiOptions {
  // Reported as the sandbox domain in create/connect responses; empty = null (the SDK then
  // uses its configured domain or sandbox URL).
  std::string domain;
  std::string envd_version = "0.6.13";
};

class Api {
 public:
  Api(SandboxManager& manager, ApiKeys& keys, ApiOptions options);

  http::Task<void> Handle(http::Exchange& ex);

 private:
  http::Task<void> Create(http::Exchange& ex);
  http::Task<void> ConnectOrResume(http::Exchange& ex, const std::string& id, bool v1_resume);
  http::Task<void> ListSandboxes(http::Exchange& ex, bool v2);
  http::Task<void> GetSandbox(http::Exchange& ex, const std::string& id);
  http::Task<void> KillSandbox(http::Exchange& ex, const std::string& id);
  http::Task<void> SetTimeout(http::Exchange& ex, const std::string& id);
  http::Task<void> Refresh(http::Exchange& ex, const std::string& id);
  http::Task<void> PauseSandbox(http::Exchange& ex, const std::string& id);
  http::Task<void> GetMetrics(http::Exchange& ex, const std::string& id);

  SandboxManager& manager_;
  ApiKeys& keys_;
  ApiOptions options_;
};

}  // namespace kiln::kilnd
