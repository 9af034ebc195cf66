#pragma once

// One MCP session of `kiln mcp`, independent of the transport: JSON-RPC requests in,
// responses out. Methods: initialize, ping, tools/list, tools/call; notifications
// (notifications/initialized, notifications/cancelled, ...) are accepted and need no answer.
// Protocol errors are JSON-RPC errors (-32700 malformed JSON, -32600 invalid request, -32601
// unknown method, -32602 invalid params or unknown tool); tool failures are tool results with
// isError (see SandboxTools).

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "cli/mcp_jsonrpc.h"
#include "cli/mcp_sandbox_tools.h"
#include "http/server.h"

namespace kiln::cli::mcp {

// The revision we implement; a client asking for another supported one gets that one.
inline constexpr std::string_view kProtocolVersion = "2025-06-18";
bool SupportedProtocolVersion(std::string_view version);

class McpSession {
 public:
  McpSession(boost::asio::any_io_executor executor, McpConfig config);

  // One message as text. The response to send back, nullopt when there is none
  // (notifications and responses).
  http::Task<std::optional<nlohmann::json>> HandleText(std::string text);
  http::Task<std::optional<nlohmann::json>> Handle(RpcMessage message);

  // Ends the session (see SandboxTools::Close). Idempotent.
  http::Task<void> Close() { return tools_.Close(); }

  bool initialized() const { return initialized_; }
  const std::string& protocol_version() const { return protocol_version_; }
  SandboxTools& tools() { return tools_; }

 private:
  nlohmann::json Initialize(const nlohmann::json& params);

  SandboxTools tools_;
  bool initialized_ = false;
  std::string protocol_version_ = std::string(kProtocolVersion);
};

}  // namespace kiln::cli::mcp
