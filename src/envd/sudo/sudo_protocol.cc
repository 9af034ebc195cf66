#include "envd/sudo/sudo_protocol.h"

#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "base/encoding.h"

namespace kiln::envd::sudo {
namespace {

using nlohmann::json;

// Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF): what nlohmann's dump
// accepts without throwing.
bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

json StringJson(const std::string& s) {
  if (IsValidUtf8(s)) return json(s);
  json j = json::object();
  j["b64"] = Base64Encode(s);
  return j;
}

json StringsJson(const std::vector<std::string>& v) {
  json a = json::array();
  for (const std::string& s : v) a.push_back(StringJson(s));
  return a;
}

std::unexpected<Error> Malformed(std::string_view what) {
  return Fail(Errc::kInvalidArgument, "malformed sudo message: " + std::string(what));
}

// A string field value: a JSON string or {"b64": ...}; never containing NUL (it becomes a C
// string in the child).
Result<std::string> StringFrom(const json& j, std::string_view what) {
  std::string s;
  if (j.is_string()) {
    s = j.get<std::string>();
  } else if (j.is_object() && j.size() == 1 && j.contains("b64") && j["b64"].is_string()) {
    auto decoded = Base64Decode(j["b64"].get<std::string>());
    if (!decoded) return Malformed(std::string(what) + " is not valid base64");
    s = std::move(*decoded);
  } else {
    return Malformed(std::string(what) + " is not a string");
  }
  if (s.find('\0') != std::string::npos) {
    return Malformed(std::string(what) + " contains a NUL byte");
  }
  return s;
}

Result<std::vector<std::string>> StringsFrom(const json& obj, const char* key) {
  std::vector<std::string> out;
  auto it = obj.find(key);
  if (it == obj.end()) return out;
  if (!it->is_array()) return Malformed(std::string(key) + " is not an array");
  out.reserve(it->size());
  for (const json& e : *it) {
    KILN_ASSIGN_OR_RETURN(std::string s, StringFrom(e, key));
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::string> OptionalString(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  return StringFrom(*it, key);
}

Result<bool> Flag(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) return false;
  if (!it->is_boolean()) return Malformed(std::string(key) + " is not a boolean");
  return it->get<bool>();
}

Result<int64_t> Integer(const json& obj, const char* key, int64_t lo, int64_t hi) {
  auto it = obj.find(key);
  if (it == obj.end()) return 0;
  if (!it->is_number_integer()) return Malformed(std::string(key) + " is not an integer");
  int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) return Malformed(std::string(key) + " is out of range");
  return v;
}

Result<json> ParseObject(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Malformed("not JSON");
  if (!j.is_object()) return Malformed("not a JSON object");
  return j;
}

Status CheckEnvEntries(const std::vector<std::string>& entries, const char* what) {
  for (const std::string& e : entries) {
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Malformed(std::string(what) + " entry without NAME=: '" + e.substr(0, 64) + "'");
    }
  }
  return {};
}

Result<std::optional<std::string>> OptionalName(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  KILN_ASSIGN_OR_RETURN(std::string s, StringFrom(*it, key));
  if (s.empty()) return Malformed(std::string(key) + " is empty");
  return s;
}

Status ParseStdio(const json& obj, SudoRequest& req) {
  auto it = obj.find("stdio");
  if (it == obj.end()) return {};
  if (!it->is_array() || it->size() > 3) return Malformed("stdio is not a list of 0, 1, 2");
  req.stdio = {false, false, false};
  int last = -1;
  for (const json& e : *it) {
    if (!e.is_number_integer()) return Malformed("stdio is not a list of 0, 1, 2");
    int64_t fd = e.get<int64_t>();
    if (fd <= last || fd > 2) return Malformed("stdio is not an ascending list of 0, 1, 2");
    req.stdio[fd] = true;
    last = static_cast<int>(fd);
  }
  return {};
}

}  // namespace

SudoReply ErrorReply(std::string_view message) {
  SudoReply r;
  r.exit_code = 1;
  r.err = "sudo: " + std::string(message) + "\n";
  return r;
}

SudoReply ReplyForWaitStatus(int wait_status) {
  SudoReply r;
  if (WIFSIGNALED(wait_status)) {
    r.signal = WTERMSIG(wait_status);
  } else {
    r.exit_code = WEXITSTATUS(wait_status);
  }
  return r;
}

std::string RequestToJson(const SudoRequest& req) {
  json j = json::object();
  j["argv"] = StringsJson(req.argv);
  j["env"] = StringsJson(req.env);
  j["assignments"] = StringsJson(req.assignments);
  if (!req.preserve_names.empty()) j["preserve_names"] = StringsJson(req.preserve_names);
  j["cwd"] = StringJson(req.cwd);
  if (!req.invoker_shell.empty()) j["invoker_shell"] = StringJson(req.invoker_shell);
  if (req.user) j["user"] = StringJson(*req.user);
  if (req.group) j["group"] = StringJson(*req.group);
  j["login"] = req.login;
  j["shell"] = req.shell;
  j["set_home"] = req.set_home;
  j["preserve_env"] = req.preserve_env;
  j["list"] = req.list;
  json stdio = json::array();
  for (int fd = 0; fd < 3; ++fd) {
    if (req.stdio[fd]) stdio.push_back(fd);
  }
  j["stdio"] = std::move(stdio);
  return j.dump();
}

Result<SudoRequest> ParseRequest(std::string_view text) {
  KILN_ASSIGN_OR_RETURN(json j, ParseObject(text));
  SudoRequest req;
  KILN_ASSIGN_OR_RETURN(req.argv, StringsFrom(j, "argv"));
  KILN_ASSIGN_OR_RETURN(req.env, StringsFrom(j, "env"));
  KILN_ASSIGN_OR_RETURN(req.assignments, StringsFrom(j, "assignments"));
  KILN_ASSIGN_OR_RETURN(req.preserve_names, StringsFrom(j, "preserve_names"));
  KILN_ASSIGN_OR_RETURN(req.cwd, OptionalString(j, "cwd"));
  KILN_ASSIGN_OR_RETURN(req.invoker_shell, OptionalString(j, "invoker_shell"));
  KILN_ASSIGN_OR_RETURN(req.user, OptionalName(j, "user"));
  KILN_ASSIGN_OR_RETURN(req.group, OptionalName(j, "group"));
  KILN_ASSIGN_OR_RETURN(req.login, Flag(j, "login"));
  KILN_ASSIGN_OR_RETURN(req.shell, Flag(j, "shell"));
  KILN_ASSIGN_OR_RETURN(req.set_home, Flag(j, "set_home"));
  KILN_ASSIGN_OR_RETURN(req.preserve_env, Flag(j, "preserve_env"));
  KILN_ASSIGN_OR_RETURN(req.list, Flag(j, "list"));
  KILN_TRY(ParseStdio(j, req));
  KILN_TRY(CheckEnvEntries(req.env, "env"));
  KILN_TRY(CheckEnvEntries(req.assignments, "assignments"));
  if (req.login && req.shell) return Malformed("both login and shell");
  if (req.argv.empty() && !req.login && !req.shell && !req.list) return Malformed("no command");
  if (!req.argv.empty() && req.argv[0].empty()) return Malformed("empty command name");
  return req;
}

std::string ReplyToJson(const SudoReply& reply) {
  json j = json::object();
  if (reply.signal > 0) {
    j["signal"] = reply.signal;
  } else {
    j["exit"] = reply.exit_code;
  }
  if (!reply.out.empty()) j["out"] = StringJson(reply.out);
  if (!reply.err.empty()) j["err"] = StringJson(reply.err);
  return j.dump();
}

Result<SudoReply> ParseReply(std::string_view text) {
  KILN_ASSIGN_OR_RETURN(json j, ParseObject(text));
  SudoReply r;
  KILN_ASSIGN_OR_RETURN(int64_t code, Integer(j, "exit", 0, 255));
  KILN_ASSIGN_OR_RETURN(int64_t sig, Integer(j, "signal", 0, 64));
  r.exit_code = static_cast<int>(code);
  r.signal = static_cast<int>(sig);
  KILN_ASSIGN_OR_RETURN(r.out, OptionalString(j, "out"));
  KILN_ASSIGN_OR_RETURN(r.err, OptionalString(j, "err"));
  return r;
}

std::string SignalToJson(int sig) {
  json j = json::object();
  j["signal"] = sig;
  return j.dump();
}

Result<int> ParseSignal(std::string_view text) {
  KILN_ASSIGN_OR_RETURN(json j, ParseObject(text));
  if (!j.contains("signal")) return Malformed("no signal");
  KILN_ASSIGN_OR_RETURN(int64_t sig, Integer(j, "signal", 1, 64));
  return static_cast<int>(sig);
}

std::string EncodeFrame(std::string_view payload) {
  std::string out;
  out.reserve(4 + payload.size());
  auto n = static_cast<uint32_t>(payload.size());
  out.push_back(static_cast<char>(n >> 24));
  out.push_back(static_cast<char>(n >> 16));
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n));
  out.append(payload);
  return out;
}

Result<std::optional<std::string>> FrameReader::Next() {
  if (buffer_.size() < 4) return std::nullopt;
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(buffer_[i])); };
  uint32_t n = (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
  if (n > max_payload_) {
    return Fail(Errc::kResourceExhausted, "sudo message of " + std::to_string(n) +
                                              " bytes exceeds the limit of " +
                                              std::to_string(max_payload_));
  }
  if (buffer_.size() - 4 < n) return std::nullopt;
  std::string payload = buffer_.substr(4, n);
  buffer_.erase(0, 4 + size_t{n});
  return payload;
}

}  // namespace kiln::envd::sudo
