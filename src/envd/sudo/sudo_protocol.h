#pragma once

// The wire format between the `sudo` client (kiln-envd started as "sudo") and the agent's
// sudo server on a unix stream socket. Every message is a frame: a 4-byte big-endian length,
// then that many bytes of JSON. The client sends one request (with its standard descriptors
// attached as SCM_RIGHTS), then zero or more signal messages; the server answers with one
// reply and closes the connection.
//
// Strings that are not valid UTF-8 (a file name in another encoding, say) travel as
// {"b64": "<base64>"} instead of a JSON string, so that arguments arrive byte for byte.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln::envd::sudo {

// Where the agent listens inside the sandbox.
inline constexpr char kDefaultSocketPath[] = "/run/kiln-sudo.sock";
// Largest request payload the server accepts (argv + environment).
inline constexpr size_t kMaxRequestBytes = 1 << 20;
// Largest frame after the request (signal messages) and of a reply.
inline constexpr size_t kMaxControlBytes = 64 * 1024;

// What the client asks for: the command line after option parsing plus its context.
struct SudoRequest {
  // The command and its arguments; empty only with `login` or `shell` (an interactive shell)
  // or `list`.
  std::vector<std::string> argv;
  // The client's environment ("NAME=value"), already reduced to what sudo keeps unless
  // `preserve_env`.
  std::vector<std::string> env;
  // VAR=value assignments from the command line; applied last.
  std::vector<std::string> assignments;
  // --preserve-env=NAME,...: names kept in addition to the defaults.
  std::vector<std::string> preserve_names;
  // The client's working directory; empty when it has none (deleted).
  std::string cwd;
  // The client's $SHELL, for -s.
  std::string invoker_shell;
  std::optional<std::string> user;   // -u: name or #uid; root when absent
  std::optional<std::string> group;  // -g: name or #gid
  bool login = false;                // -i
  bool shell = false;                // -s
  bool set_home = false;             // -H
  bool preserve_env = false;         // -E
  bool list = false;                 // -l
  // Which of the client's descriptors 0, 1, 2 are attached, in this order. A closed one is
  // not sent (the command gets /dev/null there).
  std::array<bool, 3> stdio = {true, true, true};

  int attached_fds() const { return int(stdio[0]) + int(stdio[1]) + int(stdio[2]); }
};

// The server's answer. The client writes `out` to stdout and `err` to stderr (verbatim),
// then exits with `exit_code`, or 128 + `signal` when the command was killed by a signal.
struct SudoReply {
  int exit_code = 0;
  int signal = 0;
  std::string out;
  std::string err;

  int ClientExitStatus() const { return signal > 0 ? 128 + signal : exit_code; }
};

// A reply that reports a failure: "sudo: <message>" on stderr, exit status 1.
SudoReply ErrorReply(std::string_view message);
// The reply for a wait(2) status of the command.
SudoReply ReplyForWaitStatus(int wait_status);

// JSON payloads (not framed).
std::string RequestToJson(const SudoRequest& req);
std::string ReplyToJson(const SudoReply& reply);
std::string SignalToJson(int sig);

// SECURITY: parse bytes from the other side of the socket. kInvalidArgument for anything
// malformed: not JSON, wrong types, NUL bytes in strings, a command line too long, out-of-range
// numbers.
Result<SudoRequest> ParseRequest(std::string_view json);
Result<SudoReply> ParseReply(std::string_view json);
// A signal message: the signal number, 1..64.
Result<int> ParseSignal(std::string_view json);

// Length prefix + payload.
std::string EncodeFrame(std::string_view payload);

// Splits a byte stream into frames. kResourceExhausted once a frame announces more than
// `max_payload` bytes (the stream is then unusable).
class FrameReader {
 public:
  explicit FrameReader(size_t max_payload) : max_payload_(max_payload) {}

  void Append(std::string_view bytes) { buffer_.append(bytes); }
  // Applies to frames not yet returned.
  void set_max_payload(size_t max) { max_payload_ = max; }
  // The next complete payload, nullopt when more bytes are needed.
  Result<std::optional<std::string>> Next();
  // Bytes received but not yet returned as a frame.
  size_t buffered() const { return buffer_.size(); }

 private:
  size_t max_payload_;
  std::string buffer_;
};

}  // namespace kiln::envd::sudo
