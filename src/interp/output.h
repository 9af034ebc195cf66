#pragma once

// The /execute stream of E2B's code interpreter (e2b-compat.md §4.2, §4.3): one JSON object per
// line, made from the Jupyter messages of one execution.

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "interp/jupyter_message.h"

namespace kiln::interp {

// The stream line for one iopub message of an execution, without the trailing newline, or
// nullopt for messages the stream does not carry (clear_output, update_display_data, ...):
//   execute_input  -> {"type":"number_of_executions","execution_count":N}
//   stream         -> {"type":"stdout"|"stderr","text":...,"timestamp":...}
//   execute_result -> {"type":"result","is_main_result":true, <MIME fields>}
//   display_data   -> the same with is_main_result false
//   error          -> {"type":"error","name":...,"value":...,"traceback":"<lines joined by \n>"}
// `timestamp` is an ISO 8601 time for stream lines.
std::optional<nlohmann::json> OutputLine(const Message& message, std::string_view timestamp);

// A result line from a MIME bundle: text/plain -> text (one pair of surrounding quotes
// stripped), text/html -> html, text/markdown -> markdown, image/svg+xml -> svg, image/png ->
// png, image/jpeg -> jpeg, application/pdf -> pdf, text/latex -> latex, application/json ->
// json, application/javascript -> javascript, e2b/data -> data, e2b/chart -> chart; other
// MIME types go into "extra" ({} when none). Null values are left out.
nlohmann::json ResultLine(const nlohmann::json& data, bool is_main_result);

nlohmann::json ErrorLine(std::string_view name, std::string_view value, std::string_view traceback);
nlohmann::json StreamLine(std::string_view type, std::string_view text, std::string_view timestamp);

// `line` serialised for the wire: compact JSON + "\n", invalid UTF-8 replaced.
std::string Serialize(const nlohmann::json& line);

// Now as "2026-11-26T16:35:18.982Z".
std::string StreamTimestamp();

}  // namespace kiln::interp
