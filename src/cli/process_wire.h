#pragma once

// The client side of envd's process.Process messages: the Start requests the SDK sends for
// commands.run and pty.create, decoding of the event stream, and the mapping from a process's
// end to the CLI's exit code.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "http/connect.h"

namespace kiln::cli {

struct ExecSpec {
  std::string command;  // the script given to `bash -l -c`
  std::map<std::string, std::string> envs;
  std::optional<std::string> cwd;
  bool stdin = false;  // a pipe the CLI writes to (SendInput, CloseStdin)
};

struct PtySpec {
  uint16_t cols = 80;
  uint16_t rows = 24;
  std::map<std::string, std::string> envs;  // TERM, LANG, LC_ALL defaults are added
  std::optional<std::string> cwd;
};

// {"process":{"cmd":"/bin/bash","args":["-l","-c",CMD],"envs":{...},"cwd":...},"stdin":B}
nlohmann::json ExecStartRequest(const ExecSpec& spec);
// {"process":{"cmd":"/bin/bash","args":["-i","-l"],"envs":{...}},"pty":{"size":{...}}}
nlohmann::json PtyStartRequest(const PtySpec& spec);
// {"process":{"pid":N},"input":{"stdin"|"pty":"<base64>"}}
nlohmann::json SendInputRequest(uint32_t pid, std::string_view bytes, bool pty);
// {"process":{"pid":N}}
nlohmann::json SelectorRequest(uint32_t pid);
// {"process":{"pid":N},"pty":{"size":{"cols":C,"rows":R}}}
nlohmann::json ResizeRequest(uint32_t pid, uint16_t cols, uint16_t rows);
// {"process":{"pid":N},"signal":"SIGNAL_SIGTERM"|"SIGNAL_SIGKILL"}
nlohmann::json SignalRequest(uint32_t pid, bool kill);

// Joins the words after `exec ID --` into the script for bash -c: one word is used as it is
// (so "ls | wc -l" works), several words are each shell-quoted so that they arrive as argv.
std::string CommandScript(const std::vector<std::string>& words);
// Single-quotes `word` for bash when it has characters outside [A-Za-z0-9_./=:@%+,-].
std::string ShellQuote(std::string_view word);

struct ProcessEnd {
  int32_t exit_code = 0;  // -1 when killed by a signal
  bool exited = false;
  std::string status;     // "exit status 1", "signal: killed"
  std::string error;
};

struct ProcessEvent {
  enum class Kind { kStart, kStdout, kStderr, kPty, kKeepalive, kEnd, kUnknown };
  Kind kind = Kind::kUnknown;
  uint32_t pid = 0;   // kStart
  std::string data;   // kStdout, kStderr, kPty: decoded bytes
  ProcessEnd end;     // kEnd
};

// Decodes one message frame payload ({"event":{...}}). kInvalidArgument for malformed JSON,
// wrong types or bad base64; an event of an unknown kind is kUnknown (newer envd).
Result<ProcessEvent> ParseProcessEvent(std::string_view payload);

// An end-stream frame's payload: success ({} / empty) or the error it carries, as an Error
// whose message is "<code>: <message>" (deadline_exceeded -> kTimeout, not_found -> kNotFound,
// unauthenticated -> kUnauthenticated, others kUnavailable/kInternal).
Status ParseEndStream(std::string_view payload);

// Exit status for a process end: its exit code (0..255), 128+N when signal N killed it
// ("signal: killed" -> 137), 1 when the end cannot be mapped (exitCode -1 without a known
// signal name).
int ExitCodeFor(const ProcessEnd& end);
// Signal number for a Go/strsignal style name ("killed" -> 9, "segmentation fault" -> 11,
// "signal 42" -> 42), nullopt when unknown.
std::optional<int> SignalFromName(std::string_view name);

// Exit status for a call that failed before an end event: 124 for a timeout (as timeout(1)),
// 1 otherwise.
int ExitCodeForError(const Error& error);

}  // namespace kiln::cli
