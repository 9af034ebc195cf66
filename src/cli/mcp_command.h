#pragma once

// `kiln mcp`: an MCP server that gives coding agents kiln sandboxes as tools, on stdio (the
// default, how agent configurations launch tools) or, with --http HOST:PORT, over streamable
// HTTP. Where kilnd is: --api-url, else KILN_API_URL, else E2B_API_URL, else
// http://127.0.0.1:3000; the key: --api-key, else KILN_API_KEY, else E2B_API_KEY.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/io.h"
#include "cli/mcp_server.h"

namespace kiln::cli::mcp {

struct McpCommand {
  McpConfig config;
  std::optional<HttpOptions> http;  // set by --http
  bool help = false;
};

// True when the command word of `args` (after the global --api-url/--api-key flags) is "mcp".
bool IsMcpCommand(const std::vector<std::string>& args);

// Parses `args` (the whole command line after the program name, "mcp" included).
// kInvalidArgument with a message for usage errors.
Result<McpCommand> ParseMcpCommand(const std::vector<std::string>& args, const Environment& env);

std::string McpUsage();

// Runs `kiln mcp`; returns the exit status (2 for usage errors).
int RunMcp(const std::vector<std::string>& args, const Io& io, const Environment& env);

}  // namespace kiln::cli::mcp
