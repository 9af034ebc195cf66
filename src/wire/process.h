#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

// Messages of the envd `process.Process` Connect service (spec/envd/process/process.proto) in
// their proto3-JSON form: typed requests parsed from JSON, and the response JSON built from
// typed values. Parsers accept lowerCamelCase and snake_case names and return
// kInvalidArgument for wrong types or out-of-range values; unknown fields are ignored.
namespace kiln::wire {

// process.ProcessConfig
struct ProcessConfig {
  std::string cmd;
  std::vector<std::string> args;
  std::map<std::string, std::string> envs;
  std::optional<std::string> cwd;
};

// process.PTY.Size
struct PtySize {
  uint16_t cols = 80;
  uint16_t rows = 24;
};

// process.StartRequest
struct StartRequest {
  ProcessConfig process;
  // Set when a PTY was asked for (a missing size means 80x24).
  std::optional<PtySize> pty;
  std::optional<std::string> tag;
  // Absent means true: stdin is a pipe the client can write to.
  std::optional<bool> stdin;
};

// process.ProcessSelector: exactly one of the two is set.
struct ProcessSelector {
  std::optional<uint32_t> pid;
  std::optional<std::string> tag;
};

enum class InputKind { kStdin, kPty };

// process.ProcessInput
struct ProcessInput {
  InputKind kind = InputKind::kStdin;
  std::string data;
};

struct SendInputRequest {
  ProcessSelector process;
  ProcessInput input;
};

struct SendSignalRequest {
  ProcessSelector process;
  int signal = 0;  // SIGKILL or SIGTERM
};

struct UpdateRequest {
  ProcessSelector process;
  std::optional<PtySize> pty;
};

Result<StartRequest> ParseStartRequest(const nlohmann::json& req);
// The `process` selector of Connect, CloseStdin and the requests below.
Result<ProcessSelector> ParseSelectorField(const nlohmann::json& req);
Result<SendInputRequest> ParseSendInputRequest(const nlohmann::json& req);
// `signal` as enum name (SIGNAL_SIGKILL, SIGNAL_SIGTERM) or number (9, 15).
Result<SendSignalRequest> ParseSendSignalRequest(const nlohmann::json& req);
Result<UpdateRequest> ParseUpdateRequest(const nlohmann::json& req);

enum class OutputKind { kStdout, kStderr, kPty };

// process.ProcessEvent.EndEvent
struct EndEvent {
  int32_t exit_code = 0;  // -1 when the process was killed by a signal
  bool exited = false;    // ended by exit() rather than by a signal
  std::string status;     // "exit status 1", "signal: killed"
  std::optional<std::string> error;
};

// The StartResponse/ConnectResponse messages: {"event":{"start":{"pid":N}}} and so on.
nlohmann::json StartEventJson(uint32_t pid);
nlohmann::json DataEventJson(OutputKind kind, std::string_view bytes);
nlohmann::json EndEventJson(const EndEvent& end);
nlohmann::json KeepaliveEventJson();

// process.ProcessInfo
struct ProcessInfo {
  ProcessConfig config;
  uint32_t pid = 0;
  std::optional<std::string> tag;
};
// process.ListResponse
nlohmann::json ListResponseJson(const std::vector<ProcessInfo>& processes);

// The JSON of a process.Process/Start request for a service: `argv` in cwd /, no stdin
// (templates' start commands, started by kilnd through the agent).
std::string ServiceStartBody(const std::vector<std::string>& argv);

// The stdout/stderr text and the end of a raw process.Process/Start response stream (Connect
// envelopes of {"event": {...}}), the last 2000 characters, sanitised for logs and error
// messages ("... [exited: exit status 1]", or "[error: ...]" when the call failed).
std::string ProcessStreamText(std::string_view raw);

// The end event of a raw process.Process/Start response stream; nullopt when the stream holds
// none (the process has not ended, or the stream was cut).
std::optional<EndEvent> ProcessStreamEnd(std::string_view raw);

}  // namespace kiln::wire
