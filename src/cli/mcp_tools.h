#pragma once

// The tools `kiln mcp` offers: their names, descriptions and JSON Schemas (what tools/list
// returns), and the check of a call's arguments against a schema. The schemas use the subset
// of JSON Schema that the check understands: type (string, integer, number, boolean, object,
// array), enum, minimum/maximum, items, additionalProperties, required.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln::cli::mcp {

struct ToolOptions {
  std::string default_template = "code-interpreter-v1";  // for the session's default sandbox
  std::string fallback_template = "base";                // when the default one is missing
  int64_t sandbox_timeout_s = 1800;                       // lifetime of sandboxes we create
  bool host_files = true;                                 // offer upload and download
};

// The tools array of a tools/list result.
nlohmann::json ToolDefinitions(const ToolOptions& options);

// The definition of tool `name` in `tools` (as made by ToolDefinitions), or nullptr.
const nlohmann::json* FindTool(const nlohmann::json& tools, std::string_view name);

// Checks `args` against a tool's inputSchema: known properties only, required ones present,
// types, enums and ranges. kInvalidArgument naming the first offending argument, e.g.
// "argument \"timeout\" must be an integer".
Status CheckArguments(const nlohmann::json& schema, const nlohmann::json& args);

// Typed reads of arguments that CheckArguments accepted; absent (or null) -> nullopt / empty.
std::optional<std::string> OptString(const nlohmann::json& args, std::string_view name);
std::optional<int64_t> OptInt(const nlohmann::json& args, std::string_view name);
std::optional<bool> OptBool(const nlohmann::json& args, std::string_view name);
std::map<std::string, std::string> StringMap(const nlohmann::json& args, std::string_view name);
std::vector<std::string> StringList(const nlohmann::json& args, std::string_view name);

}  // namespace kiln::cli::mcp
