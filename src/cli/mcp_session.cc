#include "cli/mcp_session.h"

#include <array>

namespace kiln::cli::mcp {

using nlohmann::json;

namespace {

constexpr std::array<std::string_view, 3> kSupportedVersions = {"2025-06-18", "2025-03-26",
                                                                 "2024-11-05"};

constexpr std::string_view kInstructions =
    "kiln runs code in isolated, throwaway Linux sandboxes (Debian). Call run_code for Python "
    "(stateful like a notebook; charts come back as images), run_command for shell commands, "
    "and read_file / write_file / list_dir / upload / download for files. Without sandbox_id "
    "every tool uses this session's default sandbox, created on first use and killed when the "
    "session ends; create_sandbox makes others (another template, no internet, or keep: true "
    "to keep it afterwards).";

json ServerInfo() {
  json info = json::object();
  info["name"] = "kiln";
  info["title"] = "kiln sandboxes";
  info["version"] = "0.1.0";
  return info;
}

json Capabilities() {
  json tools = json::object();
  tools["listChanged"] = false;
  json caps = json::object();
  caps["tools"] = tools;
  return caps;
}

json ToolsListResult(const json& tools) {
  json r = json::object();
  r["tools"] = tools;
  return r;
}

}  // namespace

bool SupportedProtocolVersion(std::string_view version) {
  for (auto v : kSupportedVersions) {
    if (v == version) return true;
  }
  return false;
}

McpSession::McpSession(boost::asio::any_io_executor executor, McpConfig config)
    : tools_(executor, std::move(config)) {}

json McpSession::Initialize(const json& params) {
  auto requested = params.find("protocolVersion");
  if (requested != params.end() && requested->is_string() &&
      SupportedProtocolVersion(requested->get_ref<const std::string&>())) {
    protocol_version_ = requested->get<std::string>();
  } else {
    protocol_version_ = std::string(kProtocolVersion);
  }
  initialized_ = true;
  json r = json::object();
  r["protocolVersion"] = protocol_version_;
  r["capabilities"] = Capabilities();
  r["serverInfo"] = ServerInfo();
  r["instructions"] = kInstructions;
  return r;
}

http::Task<std::optional<json>> McpSession::HandleText(std::string text) {
  ParsedRpc parsed = ParseRpc(text);
  if (!parsed.message) co_return std::optional<json>(std::move(parsed.error_response));
  co_return co_await Handle(std::move(*parsed.message));
}

http::Task<std::optional<json>> McpSession::Handle(RpcMessage msg) {
  // Notifications (initialized, cancelled, progress, roots changed) and responses need no
  // answer; none of them changes what we do.
  if (msg.kind != RpcMessage::Kind::kRequest) co_return std::nullopt;
  json params = msg.params.is_object() ? msg.params : json::object();
  if (msg.method == "initialize") {
    auto version = params.find("protocolVersion");
    if (version == params.end() || !version->is_string()) {
      co_return RpcError(msg.id, kInvalidParams,
                         "Invalid params: initialize needs a string \"protocolVersion\"");
    }
    co_return RpcResult(msg.id, Initialize(params));
  }
  if (msg.method == "ping") co_return RpcResult(msg.id, json::object());
  if (msg.method == "tools/list") co_return RpcResult(msg.id, ToolsListResult(tools_.definitions()));
  if (msg.method == "tools/call") {
    auto name = params.find("name");
    if (name == params.end() || !name->is_string()) {
      co_return RpcError(msg.id, kInvalidParams, "Invalid params: tools/call needs a string \"name\"");
    }
    std::string tool = name->get<std::string>();
    if (!tools_.Has(tool)) co_return RpcError(msg.id, kInvalidParams, "Unknown tool: " + tool);
    json args = json::object();
    if (auto a = params.find("arguments"); a != params.end() && !a->is_null()) {
      if (!a->is_object()) {
        co_return RpcError(msg.id, kInvalidParams, "Invalid params: \"arguments\" must be an object");
      }
      args = *a;
    }
    json result = co_await tools_.Call(std::move(tool), std::move(args));
    co_return RpcResult(msg.id, std::move(result));
  }
  co_return RpcError(msg.id, kMethodNotFound, "Method not found: " + msg.method);
}

}  // namespace kiln::cli::mcp
