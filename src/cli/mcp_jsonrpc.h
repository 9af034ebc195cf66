#pragma once

// JSON-RPC 2.0 as MCP uses it: one message per JSON text (no batches since MCP 2025-06-18),
// ids that are strings or integers. Parsing never throws; whatever the peer sends becomes
// either a message or the error response to send back.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::cli::mcp {

inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kInternalError = -32603;

struct RpcMessage {
  enum class Kind { kRequest, kNotification, kResponse };
  Kind kind = Kind::kRequest;
  nlohmann::json id;      // requests and responses: a string or an integer
  std::string method;     // requests and notifications
  nlohmann::json params;  // an object, or null when absent
};

// Exactly one of the two is set: the message, or the error response for a text that is not
// one (-32700 for malformed JSON, -32600 for JSON that is not a valid message; the id is the
// message's when it could be read, null otherwise).
struct ParsedRpc {
  std::optional<RpcMessage> message;
  nlohmann::json error_response;
};

ParsedRpc ParseRpc(std::string_view text);
ParsedRpc ValidateRpc(const nlohmann::json& j);

// {"jsonrpc":"2.0","id":id,"result":result}
nlohmann::json RpcResult(const nlohmann::json& id, nlohmann::json result);
// {"jsonrpc":"2.0","id":id,"error":{"code":code,"message":message}}
nlohmann::json RpcError(const nlohmann::json& id, int code, std::string message);

}  // namespace kiln::cli::mcp
