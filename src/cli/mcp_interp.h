#pragma once

// run_code's client side of the code-interpreter server (kiln-interp, port 49999 in
// code-interpreter sandboxes): the POST /execute body, the NDJSON stream it answers with
// (e2b-compat.md §4.2/4.3), and the MCP tool result made from it (text plus PNG/JPEG charts
// as image content).

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln::cli::mcp {

inline constexpr uint16_t kInterpPort = 49999;

struct ExecuteSpec {
  std::string code;
  std::optional<std::string> language;
  std::optional<std::string> context_id;
  std::map<std::string, std::string> env;
};

// {"code":..., "language"?:..., "context_id"?:..., "env_vars"?:{...}}
std::string ExecuteRequestBody(const ExecuteSpec& spec);

struct CodeResult {
  bool is_main = false;
  std::string text;                  // text/plain, "" when absent
  std::optional<std::string> png;    // base64
  std::optional<std::string> jpeg;   // base64
  std::vector<std::string> formats;  // every MIME field present ("text", "html", "png", ...)
};

struct CodeError {
  std::string name;
  std::string value;
  std::string traceback;
};

struct CodeExecution {
  std::string stdout_text;
  std::string stderr_text;
  std::vector<CodeResult> results;
  std::optional<CodeError> error;
  std::optional<int64_t> execution_count;
  bool ended = false;  // end_of_execution seen
};

// Incremental NDJSON decoder: bytes in as they arrive, split anywhere.
class ExecutionStream {
 public:
  // kInvalidArgument for a line that is not a JSON object or one above 64 MiB.
  Status Feed(std::string_view bytes);
  // At the end of the body: a last line without '\n' is taken too.
  Status Finish();
  const CodeExecution& execution() const { return execution_; }

 private:
  Status Line(std::string_view line);

  std::string pending_;
  CodeExecution execution_;
};

// Removes ANSI escape sequences (tracebacks come colored).
std::string StripAnsi(std::string_view text);

// Keeps at most `limit` bytes: the head and the tail with a marker between them.
std::string Truncate(std::string_view text, size_t limit);

// The tools/call result: a text block (stdout, stderr, result text, error and traceback),
// one image block per PNG/JPEG result, structuredContent with the parts, and isError when the
// code raised an error.
nlohmann::json CodeExecutionResult(const CodeExecution& execution, std::string_view sandbox_note);

}  // namespace kiln::cli::mcp
