#include "wire/process.h"

#include <signal.h>

#include "base/encoding.h"
#include "base/log.h"
#include "wire/json_util.h"

namespace kiln::wire {
namespace {

using nlohmann::json;

Result<ProcessConfig> ParseConfig(const json& obj) {
  ProcessConfig config;
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> cmd, GetString(obj, "cmd"));
  if (!cmd || cmd->empty()) return Fail(Errc::kInvalidArgument, "process.cmd is required");
  config.cmd = std::move(*cmd);
  KILN_ASSIGN_OR_RETURN(auto args, GetStringList(obj, "args"));
  if (args) config.args = std::move(*args);
  KILN_ASSIGN_OR_RETURN(auto envs, GetStringMap(obj, "envs"));
  if (envs) config.envs = std::move(*envs);
  KILN_ASSIGN_OR_RETURN(config.cwd, GetString(obj, "cwd"));
  return config;
}

Result<uint16_t> ParseDimension(const json& size, std::string_view name, uint16_t fallback) {
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> v, GetInt(size, name));
  if (!v) return fallback;
  if (*v < 0 || *v > UINT16_MAX) {
    return Fail(Errc::kInvalidArgument, "pty size " + std::string(name) + " is out of range");
  }
  return static_cast<uint16_t>(*v);
}

// The optional `pty` field of StartRequest and UpdateRequest.
Result<std::optional<PtySize>> ParsePtyField(const json& req) {
  KILN_ASSIGN_OR_RETURN(std::optional<json> pty, GetObject(req, "pty"));
  if (!pty) return std::optional<PtySize>();
  PtySize size;
  KILN_ASSIGN_OR_RETURN(std::optional<json> s, GetObject(*pty, "size"));
  if (s) {
    KILN_ASSIGN_OR_RETURN(size.cols, ParseDimension(*s, "cols", size.cols));
    KILN_ASSIGN_OR_RETURN(size.rows, ParseDimension(*s, "rows", size.rows));
  }
  return std::optional<PtySize>(size);
}

Result<int> ParseSignal(const json& req) {
  const json* f = FindField(req, "signal");
  if (f && f->is_string()) {
    const std::string& name = f->get_ref<const std::string&>();
    if (name == "SIGNAL_SIGKILL") return SIGKILL;
    if (name == "SIGNAL_SIGTERM") return SIGTERM;
  } else if (f && f->is_number_integer()) {
    int64_t v = f->get<int64_t>();
    if (v == SIGKILL || v == SIGTERM) return static_cast<int>(v);
  }
  return Fail(Errc::kInvalidArgument, "signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM");
}

}  // namespace

Result<StartRequest> ParseStartRequest(const json& req) {
  StartRequest out;
  KILN_ASSIGN_OR_RETURN(std::optional<json> process, GetObject(req, "process"));
  if (!process) return Fail(Errc::kInvalidArgument, "process is required");
  KILN_ASSIGN_OR_RETURN(out.process, ParseConfig(*process));
  KILN_ASSIGN_OR_RETURN(out.pty, ParsePtyField(req));
  KILN_ASSIGN_OR_RETURN(out.tag, GetString(req, "tag"));
  KILN_ASSIGN_OR_RETURN(out.stdin, GetBool(req, "stdin"));
  return out;
}

Result<ProcessSelector> ParseSelectorField(const json& req) {
  KILN_ASSIGN_OR_RETURN(std::optional<json> sel, GetObject(req, "process"));
  if (!sel) return Fail(Errc::kInvalidArgument, "process selector is required");
  ProcessSelector out;
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> pid, GetInt(*sel, "pid"));
  KILN_ASSIGN_OR_RETURN(out.tag, GetString(*sel, "tag"));
  if (pid) {
    if (*pid < 0 || *pid > UINT32_MAX) return Fail(Errc::kInvalidArgument, "pid is out of range");
    out.pid = static_cast<uint32_t>(*pid);
  }
  if (out.pid.has_value() == out.tag.has_value()) {
    return Fail(Errc::kInvalidArgument, "process selector needs exactly one of pid and tag");
  }
  return out;
}

Result<SendInputRequest> ParseSendInputRequest(const json& req) {
  SendInputRequest out;
  KILN_ASSIGN_OR_RETURN(out.process, ParseSelectorField(req));
  KILN_ASSIGN_OR_RETURN(std::optional<json> input, GetObject(req, "input"));
  if (!input) return Fail(Errc::kInvalidArgument, "input is required");
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> in, GetBytes(*input, "stdin"));
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> pty, GetBytes(*input, "pty"));
  if (in.has_value() == pty.has_value()) {
    return Fail(Errc::kInvalidArgument, "input needs exactly one of stdin and pty");
  }
  out.input.kind = pty ? InputKind::kPty : InputKind::kStdin;
  out.input.data = pty ? std::move(*pty) : std::move(*in);
  return out;
}

Result<SendSignalRequest> ParseSendSignalRequest(const json& req) {
  SendSignalRequest out;
  KILN_ASSIGN_OR_RETURN(out.process, ParseSelectorField(req));
  KILN_ASSIGN_OR_RETURN(out.signal, ParseSignal(req));
  return out;
}

Result<UpdateRequest> ParseUpdateRequest(const json& req) {
  UpdateRequest out;
  KILN_ASSIGN_OR_RETURN(out.process, ParseSelectorField(req));
  KILN_ASSIGN_OR_RETURN(out.pty, ParsePtyField(req));
  return out;
}

json StartEventJson(uint32_t pid) { return json{{"event", {{"start", {{"pid", pid}}}}}}; }

json DataEventJson(OutputKind kind, std::string_view bytes) {
  const char* key = kind == OutputKind::kStdout   ? "stdout"
                    : kind == OutputKind::kStderr ? "stderr"
                                                  : "pty";
  return json{{"event", {{"data", {{key, Base64Encode(bytes)}}}}}};
}

json EndEventJson(const EndEvent& end) {
  json e = {{"exitCode", end.exit_code}, {"exited", end.exited}, {"status", end.status}};
  if (end.error) e["error"] = *end.error;
  return json{{"event", {{"end", std::move(e)}}}};
}

json KeepaliveEventJson() { return json{{"event", {{"keepalive", json::object()}}}}; }

json ListResponseJson(const std::vector<ProcessInfo>& processes) {
  json list = json::array();
  for (const ProcessInfo& p : processes) {
    json envs = json::object();
    for (const auto& [k, v] : p.config.envs) envs[k] = v;
    json config = {{"cmd", p.config.cmd}, {"args", p.config.args}, {"envs", std::move(envs)}};
    if (p.config.cwd) config["cwd"] = *p.config.cwd;
    json info = {{"config", std::move(config)}, {"pid", p.pid}};
    if (p.tag) info["tag"] = *p.tag;
    list.push_back(std::move(info));
  }
  return json{{"processes", std::move(list)}};
}

std::string ServiceStartBody(const std::vector<std::string>& argv) {
  nlohmann::json args = nlohmann::json::array();
  for (size_t i = 1; i < argv.size(); ++i) args.push_back(argv[i]);
  nlohmann::json process = nlohmann::json::object();
  process["cmd"] = argv.empty() ? std::string() : argv[0];
  process["args"] = args;
  process["cwd"] = "/";
  nlohmann::json body = nlohmann::json::object();
  body["process"] = process;
  body["stdin"] = false;
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

// Calls `fn` with each {"event": {...}} object of a raw process stream (Connect envelopes),
// and with {"error": {...}} for the end-of-stream error of a failed call; a truncated last
// envelope and other frames are skipped.
template <typename Fn>
void ForEachStreamEvent(std::string_view raw, Fn&& fn) {
  while (raw.size() >= 5) {
    uint32_t len = (static_cast<uint32_t>(static_cast<uint8_t>(raw[1])) << 24) |
                   (static_cast<uint32_t>(static_cast<uint8_t>(raw[2])) << 16) |
                   (static_cast<uint32_t>(static_cast<uint8_t>(raw[3])) << 8) |
                   static_cast<uint32_t>(static_cast<uint8_t>(raw[4]));
    if (raw.size() - 5 < len) break;
    nlohmann::json frame = nlohmann::json::parse(raw.substr(5, len), nullptr, false);
    raw.remove_prefix(5 + len);
    if (!frame.is_object()) continue;
    if (frame.contains("event") && frame["event"].is_object()) {
      fn(frame["event"]);
    } else if (auto e = frame.find("error"); e != frame.end() && e->is_object()) {
      // The end-of-stream message of a failed call: {"error": {"code", "message"}}.
      fn(nlohmann::json{{"error", *e}});
    }
  }
}

}  // namespace

std::string ProcessStreamText(std::string_view raw) {
  std::string text;
  ForEachStreamEvent(raw, [&text](const nlohmann::json& event) {
    if (auto data = event.find("data"); data != event.end() && data->is_object()) {
      for (const char* stream : {"stdout", "stderr"}) {
        auto it = data->find(stream);
        if (it == data->end() || !it->is_string()) continue;
        if (auto bytes = Base64Decode(it->get<std::string>())) text += *bytes;
      }
    }
    if (auto end = event.find("end"); end != event.end() && end->is_object()) {
      auto status = end->find("status");
      text += "[exited: " + (status != end->end() && status->is_string() ? status->get<std::string>() : "?") + "]";
    }
    if (auto error = event.find("error"); error != event.end() && error->is_object()) {
      auto message = error->find("message");
      text += "[error: " + (message != error->end() && message->is_string() ? message->get<std::string>() : "?") + "]";
    }
  });
  if (text.size() > 2000) text = "..." + text.substr(text.size() - 2000);
  return log::Sanitize(text, 2100);
}

std::optional<EndEvent> ProcessStreamEnd(std::string_view raw) {
  std::optional<EndEvent> out;
  ForEachStreamEvent(raw, [&out](const nlohmann::json& event) {
    auto end = event.find("end");
    if (end == event.end() || !end->is_object()) return;
    EndEvent e;
    // proto3 JSON leaves out zero values: no exitCode means 0.
    if (auto c = end->find("exitCode"); c != end->end() && c->is_number_integer()) {
      e.exit_code = c->get<int32_t>();
    }
    if (auto x = end->find("exited"); x != end->end() && x->is_boolean()) e.exited = x->get<bool>();
    if (auto st = end->find("status"); st != end->end() && st->is_string()) e.status = st->get<std::string>();
    if (auto er = end->find("error"); er != end->end() && er->is_string()) e.error = er->get<std::string>();
    out = std::move(e);
  });
  return out;
}

}  // namespace kiln::wire
