#pragma once

// The tools of `kiln mcp` for one MCP session, as a client of kilnd's REST API and of the
// agents in its sandboxes (through kilnd's proxy) — never of the orchestrator (DESIGN §1).
//
// The session keeps a default sandbox, created on first use by a tool called without
// sandbox_id (template ToolOptions::default_template, or fallback_template when kilnd does not
// have that one), and remembers every sandbox it created. Close() kills those, except the ones
// created with keep: true.
//
// Single io_context, not thread-safe; tool calls may overlap (each uses its own connections).

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/endpoint.h"
#include "cli/kilnd_client.h"
#include "cli/mcp_tools.h"
#include "http/server.h"

namespace kiln::cli::mcp {

struct McpConfig {
  Endpoint endpoint;
  std::string api_key;
  ToolOptions tools;
};

class SandboxTools {
 public:
  SandboxTools(boost::asio::any_io_executor executor, McpConfig config);
  SandboxTools(const SandboxTools&) = delete;
  SandboxTools& operator=(const SandboxTools&) = delete;

  // What tools/list returns.
  const nlohmann::json& definitions() const { return definitions_; }
  bool Has(std::string_view name) const;

  // Runs tool `name` (REQUIRES: Has(name)) and returns a CallToolResult. Never fails: bad
  // arguments, kilnd errors, unknown sandboxes and failed commands become results with
  // isError: true and a message that says what happened.
  http::Task<nlohmann::json> Call(std::string name, nlohmann::json args);

  // Ends the session: waits for sandbox creations in flight, then kills every sandbox this
  // session created without keep. Later calls fail. Idempotent.
  http::Task<void> Close();

  bool closed() const { return closed_; }
  // Sandboxes created in this session and still alive, with their keep flag.
  const std::map<std::string, bool>& owned() const { return owned_; }
  const std::optional<std::string>& default_sandbox() const { return default_id_; }

 private:
  struct Created {
    std::string id;
    std::string template_id;
    nlohmann::json sandbox;  // kilnd's answer
    std::string fallback_reason;  // why the fallback template was used, "" if it was not
  };
  struct CreateSpec {
    std::string template_id;
    std::optional<std::string> fallback_template;  // tried when template_id is not found
    int64_t timeout_s = 0;
    std::map<std::string, std::string> env;
    std::map<std::string, std::string> metadata;
    bool internet = true;
    bool keep = false;
  };
  // The sandbox a call works on: args.sandbox_id, or the default sandbox (created if needed).
  // `note` says so when the default sandbox was created by this call.
  struct Target {
    std::string id;
    std::string note;
  };

  KilndClient Client() const;
  http::Task<Result<Created>> Create(CreateSpec spec);
  http::Task<Result<Created>> CreateOnce(const CreateSpec& spec, const std::string& template_id);
  http::Task<Result<Target>> Resolve(const nlohmann::json& args);
  http::Task<Result<Target>> DefaultSandbox();
  http::Task<Status> Kill(const std::string& id);
  void Forget(const std::string& id);
  // Wakes coroutines waiting for the default sandbox or for creations to finish.
  void Notify();
  http::Task<void> WaitForNotify();

  http::Task<Result<nlohmann::json>> Dispatch(const std::string& name, const nlohmann::json& args);
  http::Task<Result<nlohmann::json>> CreateSandboxTool(const nlohmann::json& args);
  http::Task<Result<nlohmann::json>> ListSandboxesTool(const nlohmann::json& args);
  http::Task<Result<nlohmann::json>> KillSandboxTool(const nlohmann::json& args);
  http::Task<Result<nlohmann::json>> RunCodeTool(const nlohmann::json& args);
  http::Task<Result<nlohmann::json>> RunCommandTool(const nlohmann::json& args);
  http::Task<Result<nlohmann::json>> ReadFileTool(const nlohmann::json& args);
  http::Task<Result<nlohmann::json>> WriteFileTool(const nlohmann::json& args);
  http::Task<Result<nlohmann::json>> ListDirTool(const nlohmann::json& args);
  http::Task<Result<nlohmann::json>> UploadTool(const nlohmann::json& args);
  http::Task<Result<nlohmann::json>> DownloadTool(const nlohmann::json& args);

  boost::asio::any_io_executor executor_;
  McpConfig config_;
  nlohmann::json definitions_;
  std::map<std::string, bool> owned_;               // id -> keep
  std::map<std::string, std::string> templates_;    // id -> template, for messages
  std::optional<std::string> default_id_;
  bool creating_default_ = false;
  int creations_ = 0;
  bool closed_ = false;
  boost::asio::steady_timer wake_;
};

// A CallToolResult with one text block; `structured` (when not null) as structuredContent.
nlohmann::json TextResult(std::string text, nlohmann::json structured = nullptr,
                          bool is_error = false);
// isError: true with `message`.
nlohmann::json ErrorResult(std::string message);

// True when `bytes` is valid UTF-8.
bool IsUtf8(std::string_view bytes);
// "image/png", "image/jpeg", "image/gif", "image/webp" by magic number; "" otherwise.
std::string ImageType(std::string_view bytes);

}  // namespace kiln::cli::mcp
