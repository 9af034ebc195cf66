#include "cli/mcp_jsonrpc.h"

namespace kiln::cli::mcp {

using nlohmann::json;

namespace {

bool ValidId(const json& id) { return id.is_string() || id.is_number_integer(); }

ParsedRpc Invalid(const json& id, std::string message) {
  ParsedRpc out;
  out.error_response = RpcError(id, kInvalidRequest, std::move(message));
  return out;
}

}  // namespace

json RpcResult(const json& id, json result) {
  json j = json::object();
  j["jsonrpc"] = "2.0";
  j["id"] = id;
  j["result"] = std::move(result);
  return j;
}

json RpcError(const json& id, int code, std::string message) {
  json error = json::object();
  error["code"] = code;
  error["message"] = std::move(message);
  json j = json::object();
  j["jsonrpc"] = "2.0";
  j["id"] = id;
  j["error"] = std::move(error);
  return j;
}

ParsedRpc ValidateRpc(const json& j) {
  if (j.is_array()) {
    return Invalid(nullptr, "Invalid Request: JSON-RPC batches are not supported (MCP 2025-06-18)");
  }
  if (!j.is_object()) return Invalid(nullptr, "Invalid Request: a message must be a JSON object");
  json id = nullptr;
  auto id_it = j.find("id");
  bool has_id = id_it != j.end();
  if (has_id) {
    if (!ValidId(*id_it)) {
      return Invalid(nullptr, "Invalid Request: \"id\" must be a string or an integer");
    }
    id = *id_it;
  }
  auto version = j.find("jsonrpc");
  if (version == j.end() || !version->is_string() || *version != "2.0") {
    return Invalid(id, "Invalid Request: \"jsonrpc\" must be \"2.0\"");
  }
  RpcMessage msg;
  auto method = j.find("method");
  if (method == j.end()) {
    // A response to a request of ours (we send none, but the peer may answer anyway).
    bool has_result = j.contains("result");
    bool has_error = j.contains("error");
    if (!has_id || has_result == has_error) {
      return Invalid(id, "Invalid Request: missing \"method\"");
    }
    msg.kind = RpcMessage::Kind::kResponse;
    msg.id = id;
    ParsedRpc out;
    out.message = std::move(msg);
    return out;
  }
  if (!method->is_string() || method->get_ref<const std::string&>().empty()) {
    return Invalid(id, "Invalid Request: \"method\" must be a non-empty string");
  }
  msg.method = method->get<std::string>();
  auto params = j.find("params");
  if (params != j.end() && !params->is_null()) {
    // Positional parameters are valid JSON-RPC, but no MCP method takes them. A request is
    // answered with -32602; a notification gets no answer, so it goes on without them.
    if (!params->is_object() && has_id) {
      ParsedRpc out;
      out.error_response =
          RpcError(id, kInvalidParams, "Invalid params: \"params\" must be an object");
      return out;
    }
    if (params->is_object()) msg.params = *params;
  }
  msg.kind = has_id ? RpcMessage::Kind::kRequest : RpcMessage::Kind::kNotification;
  msg.id = id;
  ParsedRpc out;
  out.message = std::move(msg);
  return out;
}

ParsedRpc ParseRpc(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    ParsedRpc out;
    out.error_response = RpcError(nullptr, kParseError, "Parse error: the message is not valid JSON");
    return out;
  }
  return ValidateRpc(j);
}

}  // namespace kiln::cli::mcp
