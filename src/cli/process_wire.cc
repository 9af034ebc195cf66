#include "cli/process_wire.h"

#include <array>
#include <cctype>
#include <charconv>

#include "base/encoding.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

json ProcessConfigJson(const std::string& cmd, std::vector<std::string> args,
                       const std::map<std::string, std::string>& envs,
                       const std::optional<std::string>& cwd) {
  json process = json::object();
  process["cmd"] = cmd;
  process["args"] = std::move(args);
  json e = json::object();
  for (const auto& [k, v] : envs) e[k] = v;
  process["envs"] = std::move(e);
  if (cwd) process["cwd"] = *cwd;
  return process;
}

bool SafeShellChar(unsigned char c) {
  if (std::isalnum(c)) return true;
  switch (c) {
    case '_': case '.': case '/': case '=': case ':': case '@': case '%': case '+': case ',':
    case '-':
      return true;
    default:
      return false;
  }
}

// Go's os/exec and strsignal(3) wording for the Linux signals, lower-cased.
struct SignalName {
  int number;
  std::string_view name;
};
constexpr std::array<SignalName, 31> kSignalNames = {{
    {1, "hangup"}, {2, "interrupt"}, {3, "quit"}, {4, "illegal instruction"},
    {5, "trace/breakpoint trap"}, {6, "aborted"}, {7, "bus error"},
    {8, "floating point exception"}, {9, "killed"}, {10, "user defined signal 1"},
    {11, "segmentation fault"}, {12, "user defined signal 2"}, {13, "broken pipe"},
    {14, "alarm clock"}, {15, "terminated"}, {16, "stack fault"}, {17, "child exited"},
    {18, "continued"}, {19, "stopped (signal)"}, {20, "stopped"}, {21, "stopped (tty input)"},
    {22, "stopped (tty output)"}, {23, "urgent i/o condition"}, {24, "cpu time limit exceeded"},
    {25, "file size limit exceeded"}, {26, "virtual timer expired"},
    {27, "profiling timer expired"}, {28, "window changed"}, {29, "i/o possible"},
    {30, "power failure"}, {31, "bad system call"},
}};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Result<std::string> DecodeBytes(const json& v, std::string_view what) {
  if (!v.is_string()) return Fail(Errc::kInvalidArgument, std::string(what) + " is not base64");
  auto bytes = Base64Decode(v.get<std::string>());
  if (!bytes) return Fail(Errc::kInvalidArgument, std::string(what) + " is not base64");
  return *bytes;
}

int64_t IntField(const json& obj, std::string_view name, int64_t dflt) {
  auto it = obj.find(name);
  if (it == obj.end()) return dflt;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    int64_t v = dflt;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
  }
  return dflt;
}

std::string StringField(const json& obj, std::string_view name) {
  auto it = obj.find(name);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<ProcessEvent> ParseData(const json& data) {
  ProcessEvent ev;
  if (!data.is_object()) return Fail(Errc::kInvalidArgument, "data event is not an object");
  for (auto [key, kind] : {std::pair{"stdout", ProcessEvent::Kind::kStdout},
                           std::pair{"stderr", ProcessEvent::Kind::kStderr},
                           std::pair{"pty", ProcessEvent::Kind::kPty}}) {
    auto it = data.find(key);
    if (it == data.end() || it->is_null()) continue;
    KILN_ASSIGN_OR_RETURN(ev.data, DecodeBytes(*it, key));
    ev.kind = kind;
    return ev;
  }
  ev.kind = ProcessEvent::Kind::kUnknown;
  return ev;
}

Errc ErrcForConnectCode(std::string_view code) {
  if (code == "deadline_exceeded" || code == "canceled") return Errc::kTimeout;
  if (code == "not_found") return Errc::kNotFound;
  if (code == "invalid_argument") return Errc::kInvalidArgument;
  if (code == "unauthenticated") return Errc::kUnauthenticated;
  if (code == "permission_denied") return Errc::kPermissionDenied;
  if (code == "unavailable") return Errc::kUnavailable;
  if (code == "resource_exhausted") return Errc::kResourceExhausted;
  return Errc::kInternal;
}

}  // namespace

json ExecStartRequest(const ExecSpec& spec) {
  json req = json::object();
  req["process"] =
      ProcessConfigJson("/bin/bash", {"-l", "-c", spec.command}, spec.envs, spec.cwd);
  req["stdin"] = spec.stdin;
  return req;
}

json PtyStartRequest(const PtySpec& spec) {
  std::map<std::string, std::string> envs = spec.envs;
  envs.try_emplace("TERM", "xterm-256color");
  envs.try_emplace("LANG", "C.UTF-8");
  envs.try_emplace("LC_ALL", "C.UTF-8");
  json req = json::object();
  req["process"] = ProcessConfigJson("/bin/bash", {"-i", "-l"}, envs, spec.cwd);
  json size = json::object();
  size["cols"] = spec.cols;
  size["rows"] = spec.rows;
  json pty = json::object();
  pty["size"] = std::move(size);
  req["pty"] = std::move(pty);
  return req;
}

json SelectorRequest(uint32_t pid) {
  json sel = json::object();
  sel["pid"] = pid;
  json req = json::object();
  req["process"] = std::move(sel);
  return req;
}

json SendInputRequest(uint32_t pid, std::string_view bytes, bool pty) {
  json req = SelectorRequest(pid);
  json input = json::object();
  input[pty ? "pty" : "stdin"] = Base64Encode(bytes);
  req["input"] = std::move(input);
  return req;
}

json ResizeRequest(uint32_t pid, uint16_t cols, uint16_t rows) {
  json req = SelectorRequest(pid);
  json size = json::object();
  size["cols"] = cols;
  size["rows"] = rows;
  json pty = json::object();
  pty["size"] = std::move(size);
  req["pty"] = std::move(pty);
  return req;
}

json SignalRequest(uint32_t pid, bool kill) {
  json req = SelectorRequest(pid);
  req["signal"] = kill ? "SIGNAL_SIGKILL" : "SIGNAL_SIGTERM";
  return req;
}

std::string ShellQuote(std::string_view word) {
  bool safe = !word.empty();
  for (unsigned char c : word) safe = safe && SafeShellChar(c);
  if (safe) return std::string(word);
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

std::string CommandScript(const std::vector<std::string>& words) {
  if (words.size() == 1) return words[0];
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ' ';
    out += ShellQuote(w);
  }
  return out;
}

Result<ProcessEvent> ParseProcessEvent(std::string_view payload) {
  json msg = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (msg.is_discarded() || !msg.is_object()) {
    return Fail(Errc::kInvalidArgument, "process event is not a JSON object");
  }
  auto event = msg.find("event");
  ProcessEvent ev;
  if (event == msg.end() || !event->is_object()) return ev;
  if (auto it = event->find("start"); it != event->end() && it->is_object()) {
    int64_t pid = IntField(*it, "pid", -1);
    if (pid < 0 || pid > UINT32_MAX) return Fail(Errc::kInvalidArgument, "start event without pid");
    ev.kind = ProcessEvent::Kind::kStart;
    ev.pid = static_cast<uint32_t>(pid);
    return ev;
  }
  if (auto it = event->find("data"); it != event->end()) return ParseData(*it);
  if (auto it = event->find("end"); it != event->end() && it->is_object()) {
    ev.kind = ProcessEvent::Kind::kEnd;
    ev.end.exit_code = static_cast<int32_t>(IntField(*it, "exitCode", IntField(*it, "exit_code", 0)));
    auto exited = it->find("exited");
    ev.end.exited = exited != it->end() && exited->is_boolean() && exited->get<bool>();
    ev.end.status = StringField(*it, "status");
    ev.end.error = StringField(*it, "error");
    return ev;
  }
  if (event->contains("keepalive")) ev.kind = ProcessEvent::Kind::kKeepalive;
  return ev;
}

Status ParseEndStream(std::string_view payload) {
  if (payload.empty()) return {};
  json msg = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (msg.is_discarded() || !msg.is_object()) {
    return Fail(Errc::kInternal, "malformed end of stream");
  }
  auto err = msg.find("error");
  if (err == msg.end() || err->is_null()) return {};
  std::string code = err->is_object() ? StringField(*err, "code") : "";
  std::string message = err->is_object() ? StringField(*err, "message") : "";
  if (code.empty()) code = "unknown";
  return Fail(ErrcForConnectCode(code), message.empty() ? code : code + ": " + message);
}

std::optional<int> SignalFromName(std::string_view name) {
  std::string n = Lower(name);
  if (n.starts_with("signal ")) {
    int v = 0;
    std::string_view num = std::string_view(n).substr(7);
    auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
    if (ec == std::errc() && ptr == num.data() + num.size() && v > 0 && v < 128) return v;
    return std::nullopt;
  }
  for (const auto& s : kSignalNames) {
    if (s.name == n) return s.number;
  }
  return std::nullopt;
}

int ExitCodeFor(const ProcessEnd& end) {
  constexpr std::string_view kSignalPrefix = "signal: ";
  if (end.exit_code >= 0 && (end.exited || !end.status.starts_with(kSignalPrefix))) {
    int code = end.exit_code & 0xff;
    return code == 0 && end.exit_code != 0 ? 1 : code;
  }
  std::string_view status = end.status;
  if (status.starts_with(kSignalPrefix)) {
    status.remove_prefix(kSignalPrefix.size());
    constexpr std::string_view kCore = " (core dumped)";
    if (status.ends_with(kCore)) status.remove_suffix(kCore.size());
    if (auto sig = SignalFromName(status)) return 128 + *sig;
  }
  return 1;
}

int ExitCodeForError(const Error& error) { return error.code() == Errc::kTimeout ? 124 : 1; }

}  // namespace kiln::cli
