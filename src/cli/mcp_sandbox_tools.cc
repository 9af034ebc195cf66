// The session's sandboxes (default sandbox, ownership, cleanup), the lifecycle tools
// (create_sandbox, list_sandboxes, kill_sandbox) and the execution tools (run_command,
// run_code). The file tools are in mcp_file_tools.cc.

#include "cli/mcp_sandbox_tools.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <set>

#include "cli/commands.h"
#include "cli/mcp_interp.h"
#include "cli/process_client.h"
#include "cli/table.h"
#include "http/connect.h"

namespace kiln::cli::mcp {

namespace net = boost::asio;
using nlohmann::json;

namespace {

constexpr std::chrono::minutes kCreateTimeout{5};
constexpr std::chrono::seconds kCloseWait{30};
constexpr int64_t kDefaultCommandTimeoutS = 60;
constexpr int64_t kDefaultCodeTimeoutS = 300;
constexpr size_t kMaxOutput = 100 * 1024;
constexpr int kMaxPages = 100;

json TextBlock(std::string text) {
  json c = json::object();
  c["type"] = "text";
  c["text"] = std::move(text);
  return c;
}

std::string CreateBody(const std::map<std::string, std::string>& env,
                       const std::map<std::string, std::string>& metadata,
                       const std::string& template_id, int64_t timeout_s, bool internet) {
  json body = json::object();
  body["templateID"] = template_id;
  if (timeout_s > 0) body["timeout"] = timeout_s;
  if (!metadata.empty()) body["metadata"] = metadata;
  if (!env.empty()) body["envVars"] = env;
  if (!internet) body["allow_internet_access"] = false;
  return http::connect::Dump(body);
}

std::string JsonStr(const json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

std::map<std::string, std::string> JsonStrMap(const json& obj, std::string_view key) {
  std::map<std::string, std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_object()) return out;
  for (const auto& [k, v] : it->items()) out[k] = v.is_string() ? v.get<std::string>() : v.dump();
  return out;
}

json ListedEntry(const json& s, const std::map<std::string, bool>& owned,
                 const std::optional<std::string>& default_id) {
  json e = json::object();
  std::string id = JsonStr(s, "sandboxID");
  std::string tmpl = JsonStr(s, "alias");
  if (tmpl.empty()) tmpl = JsonStr(s, "templateID");
  e["sandbox_id"] = id;
  e["template"] = tmpl;
  e["state"] = JsonStr(s, "state");
  e["started_at"] = JsonStr(s, "startedAt");
  e["end_at"] = JsonStr(s, "endAt");
  e["metadata"] = JsonStrMap(s, "metadata");
  auto it = owned.find(id);
  e["created_by_this_session"] = it != owned.end();
  e["kept_after_session"] = it != owned.end() && it->second;
  e["default"] = default_id && *default_id == id;
  return e;
}

std::string ListText(const json& entries) {
  if (entries.empty()) return "No sandboxes.\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : entries) {
    std::string mark;
    if (e.value("default", false)) mark = "default";
    if (e.value("created_by_this_session", false)) {
      if (!mark.empty()) mark += ",";
      mark += e.value("kept_after_session", false) ? "ours,kept" : "ours";
    }
    rows.push_back({e.value("sandbox_id", ""), e.value("template", ""), e.value("state", ""),
                    e.value("started_at", ""), e.value("end_at", ""),
                    FormatMetadata(JsonStrMap(e, "metadata")), mark.empty() ? "-" : mark});
  }
  return FormatTable({"ID", "TEMPLATE", "STATE", "STARTED", "ENDS", "METADATA", "SESSION"}, rows);
}

// Keeps the head and the tail of a stream that may be large.
class BoundedOutput {
 public:
  explicit BoundedOutput(size_t limit) : half_(limit / 2) {}
  void Append(std::string_view data) {
    total_ += data.size();
    if (head_.size() < half_) {
      size_t n = std::min(data.size(), half_ - head_.size());
      head_.append(data.substr(0, n));
      data.remove_prefix(n);
    }
    tail_.append(data);
    if (tail_.size() > 2 * half_) tail_.erase(0, tail_.size() - half_);
  }
  std::string Text() const {
    std::string tail = tail_.size() > half_ ? tail_.substr(tail_.size() - half_) : tail_;
    size_t omitted = total_ - head_.size() - tail.size();
    if (omitted == 0) return head_ + tail;
    return head_ + "\n[... " + std::to_string(omitted) + " bytes omitted ...]\n" + tail;
  }

 private:
  size_t half_;
  size_t total_ = 0;
  std::string head_;
  std::string tail_;
};

std::string Section(std::string_view name, const std::string& body) {
  if (body.empty()) return "";
  std::string out = "[" + std::string(name) + "]\n" + body;
  if (!out.ends_with('\n')) out += '\n';
  return out;
}

json CommandResult(std::string headline, const std::string& out, const std::string& err,
                   json structured, bool is_error, const std::string& note) {
  std::string text = std::move(headline) + "\n" + Section("stdout", out) + Section("stderr", err);
  text += note;
  structured["stdout"] = out;
  structured["stderr"] = err;
  return TextResult(std::move(text), std::move(structured), is_error);
}

std::string Headline(const ProcessEnd& end) {
  if (end.exited) return "exit code: " + std::to_string(end.exit_code);
  std::string status = end.status.empty() ? end.error : end.status;
  return "the command did not exit normally: " + (status.empty() ? "unknown status" : status);
}

bool IsCodeInterpreterTemplate(const std::string& t) { return t.find("code-interpreter") != std::string::npos; }

std::string NoInterpreterMessage(const std::string& id, const std::string& template_id,
                                 const std::string& detail) {
  std::string t = template_id.empty() ? "" : " (template " + template_id + ")";
  return "sandbox " + id + t + " has no code interpreter answering on port 49999 (" + detail +
         "). run_code needs a sandbox from template code-interpreter-v1: create one with "
         "create_sandbox {\"template\": \"code-interpreter-v1\"}, or use run_command with "
         "`python3 -c ...` in this one.";
}

std::string DefaultNote(const std::string& id, const std::string& template_id,
                        const std::string& fallback_reason) {
  std::string note = "\n(ran in this session's default sandbox " + id + ", template " +
                     template_id + ", created for this call; it is killed when the MCP session ends";
  if (!fallback_reason.empty()) note += "; " + fallback_reason + ", so run_code will not work in it";
  return note + ")\n";
}

// The default template is missing (404) or kilnd could not start a sandbox from it (5xx): the
// fallback template may still work. Refusals (bad key, bad request, quota) would refuse it too.
bool WorthFallingBack(const Error& e) {
  return e.code() == Errc::kNotFound || e.code() == Errc::kUnavailable ||
         e.code() == Errc::kTimeout || e.code() == Errc::kInternal;
}

CodeError MakeCodeError(std::string name, std::string value) {
  CodeError e;
  e.name = std::move(name);
  e.value = std::move(value);
  return e;
}

}  // namespace

json TextResult(std::string text, json structured, bool is_error) {
  json out = json::object();
  json content = json::array();
  content.push_back(TextBlock(std::move(text)));
  out["content"] = std::move(content);
  if (!structured.is_null()) out["structuredContent"] = std::move(structured);
  out["isError"] = is_error;
  return out;
}

json ErrorResult(std::string message) { return TextResult("Error: " + std::move(message), nullptr, true); }

SandboxTools::SandboxTools(net::any_io_executor executor, McpConfig config)
    : executor_(executor),
      config_(std::move(config)),
      definitions_(ToolDefinitions(config_.tools)),
      wake_(executor) {
  wake_.expires_at(net::steady_timer::time_point::max());
}

bool SandboxTools::Has(std::string_view name) const { return FindTool(definitions_, name) != nullptr; }

KilndClient SandboxTools::Client() const { return KilndClient(config_.endpoint, config_.api_key); }

void SandboxTools::Notify() { wake_.cancel(); }

http::Task<void> SandboxTools::WaitForNotify() {
  // The timer never expires: Notify() cancels the waits. Waiters never re-arm it, so they
  // cannot cancel each other.
  boost::system::error_code ec;
  co_await wake_.async_wait(net::redirect_error(net::use_awaitable, ec));
}

http::Task<nlohmann::json> SandboxTools::Call(std::string name, json args) {
  if (closed_) co_return ErrorResult("the MCP session has ended");
  const json* def = FindTool(definitions_, name);
  if (def == nullptr) co_return ErrorResult("unknown tool " + name);
  if (args.is_null()) args = json::object();
  if (auto st = CheckArguments((*def)["inputSchema"], args); !st) {
    co_return ErrorResult("invalid arguments for " + name + ": " + st.error().message());
  }
  std::optional<Result<json>> result;
  std::string thrown;
  try {
    result.emplace(co_await Dispatch(name, args));
  } catch (const std::exception& e) {
    // Boost and the standard library may throw; that fails this call, not the server.
    thrown = e.what();
  }
  if (!result) co_return ErrorResult(name + ": internal error: " + thrown);
  if (!*result) co_return ErrorResult(result->error().message());
  co_return std::move(**result);
}

http::Task<Result<json>> SandboxTools::Dispatch(const std::string& name, const json& args) {
  if (name == "create_sandbox") co_return co_await CreateSandboxTool(args);
  if (name == "list_sandboxes") co_return co_await ListSandboxesTool(args);
  if (name == "kill_sandbox") co_return co_await KillSandboxTool(args);
  if (name == "run_code") co_return co_await RunCodeTool(args);
  if (name == "run_command") co_return co_await RunCommandTool(args);
  if (name == "read_file") co_return co_await ReadFileTool(args);
  if (name == "write_file") co_return co_await WriteFileTool(args);
  if (name == "list_dir") co_return co_await ListDirTool(args);
  if (name == "upload") co_return co_await UploadTool(args);
  if (name == "download") co_return co_await DownloadTool(args);
  co_return Fail(Errc::kInvalidArgument, "unknown tool " + name);
}

// --- sandboxes of the session ---

http::Task<Result<SandboxTools::Created>> SandboxTools::CreateOnce(const CreateSpec& spec,
                                                                   const std::string& template_id) {
  KilndClient kilnd = Client();
  std::string body = CreateBody(spec.env, spec.metadata, template_id, spec.timeout_s, spec.internet);
  ++creations_;
  auto res = co_await kilnd.Call(http::Verb::post, "/v2/sandboxes", std::move(body), kCreateTimeout);
  std::optional<Created> created;
  std::optional<Error> error;
  if (!res) {
    error.emplace(std::move(res).error());
  } else {
    json j = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
    std::string id = j.is_object() ? JsonStr(j, "sandboxID") : "";
    if (!IsSandboxId(id)) {
      error.emplace(Errc::kInternal, "kilnd's answer has no valid sandboxID");
    } else {
      // Registered before Close() can see the creation end, so it is killed with the rest.
      owned_[id] = spec.keep;
      templates_[id] = template_id;
      created.emplace(Created{id, template_id, std::move(j), ""});
    }
  }
  --creations_;
  Notify();
  if (error) co_return Unexpected(std::move(*error));
  co_return std::move(*created);
}

http::Task<Result<SandboxTools::Created>> SandboxTools::Create(CreateSpec spec) {
  auto first = co_await CreateOnce(spec, spec.template_id);
  if (first || !WorthFallingBack(first.error()) || !spec.fallback_template ||
      *spec.fallback_template == spec.template_id) {
    if (!first) co_return Unexpected(std::move(first).error().Wrap("create sandbox from template " + spec.template_id));
    co_return first;
  }
  std::string fallback = *spec.fallback_template;
  auto second = co_await CreateOnce(spec, fallback);
  if (!second) {
    co_return Unexpected(std::move(second).error().Wrap(
        "create sandbox (template " + spec.template_id + ": " + first.error().message() +
        "; fallback template " + fallback + ")"));
  }
  second->fallback_reason = spec.template_id + " unavailable: " + first.error().message();
  co_return second;
}

http::Task<Result<SandboxTools::Target>> SandboxTools::DefaultSandbox() {
  for (;;) {
    if (closed_) co_return Fail(Errc::kFailedPrecondition, "the MCP session has ended");
    if (default_id_) co_return Target{*default_id_, ""};
    if (!creating_default_) break;
    co_await WaitForNotify();
  }
  creating_default_ = true;
  CreateSpec spec;
  spec.template_id = config_.tools.default_template;
  spec.fallback_template = config_.tools.fallback_template;
  spec.timeout_s = config_.tools.sandbox_timeout_s;
  auto created = co_await Create(std::move(spec));
  creating_default_ = false;
  Notify();
  if (!created) {
    co_return Unexpected(std::move(created).error().Wrap("creating this session's default sandbox"));
  }
  if (!default_id_) default_id_ = created->id;
  co_return Target{created->id, DefaultNote(created->id, created->template_id, created->fallback_reason)};
}

http::Task<Result<SandboxTools::Target>> SandboxTools::Resolve(const json& args) {
  if (auto id = OptString(args, "sandbox_id")) {
    if (!IsSandboxId(*id)) {
      co_return Fail(Errc::kInvalidArgument,
                     "\"" + *id + "\" is not a sandbox ID (IDs are lower-case letters and digits; "
                     "list_sandboxes shows them)");
    }
    co_return Target{*id, ""};
  }
  co_return co_await DefaultSandbox();
}

http::Task<Status> SandboxTools::Kill(const std::string& id) {
  KilndClient kilnd = Client();
  auto res = co_await kilnd.Call(http::Verb::delete_, "/sandboxes/" + QueryEscape(id));
  if (!res) co_return Unexpected(std::move(res).error());
  co_return Status();
}

void SandboxTools::Forget(const std::string& id) {
  owned_.erase(id);
  templates_.erase(id);
  if (default_id_ && *default_id_ == id) default_id_.reset();
}

http::Task<void> SandboxTools::Close() {
  if (closed_) co_return;
  closed_ = true;
  Notify();
  if (creations_ > 0) {
    net::steady_timer deadline(executor_, kCloseWait);
    auto expired = std::make_shared<bool>(false);
    auto on_deadline = [this, expired](boost::system::error_code ec) {
      if (ec) return;
      *expired = true;
      Notify();
    };
    deadline.async_wait(std::move(on_deadline));
    while (creations_ > 0 && !*expired) co_await WaitForNotify();
    deadline.cancel();
  }
  std::vector<std::string> doomed;
  for (const auto& [id, keep] : owned_) {
    if (!keep) doomed.push_back(id);
  }
  for (const auto& id : doomed) {
    auto st = co_await Kill(id);
    if (!st && st.error().code() != Errc::kNotFound) {
      PrintError(2, "mcp: kill sandbox " + id + " at session end: " + st.error().message());
    }
    Forget(id);
  }
}

// --- lifecycle tools ---

http::Task<Result<json>> SandboxTools::CreateSandboxTool(const json& args) {
  CreateSpec spec;
  if (auto t = OptString(args, "template")) {
    spec.template_id = *t;
  } else {
    spec.template_id = config_.tools.default_template;
    spec.fallback_template = config_.tools.fallback_template;
  }
  if (spec.template_id.empty()) co_return Fail(Errc::kInvalidArgument, "template must not be empty");
  spec.timeout_s = OptInt(args, "timeout").value_or(config_.tools.sandbox_timeout_s);
  spec.env = StringMap(args, "env");
  spec.metadata = StringMap(args, "metadata");
  spec.internet = OptBool(args, "internet").value_or(true);
  spec.keep = OptBool(args, "keep").value_or(false);
  KILN_CO_ASSIGN_OR_RETURN(Created created, co_await Create(spec));
  bool make_default = OptBool(args, "make_default").value_or(!default_id_.has_value());
  if (make_default) default_id_ = created.id;
  std::string text = "Created sandbox " + created.id + " (template " + created.template_id + ", " +
                     std::to_string(spec.timeout_s) + " s timeout, internet " +
                     (spec.internet ? "on" : "off") + ").";
  if (!created.fallback_reason.empty()) text += " (" + created.fallback_reason + ")";
  if (make_default) text += " It is now this session's default sandbox.";
  text += spec.keep ? " It is kept after the MCP session ends; kill it with kill_sandbox."
                    : " It is killed when the MCP session ends.";
  json structured = json::object();
  structured["sandbox_id"] = created.id;
  structured["template"] = created.template_id;
  structured["timeout"] = spec.timeout_s;
  structured["internet"] = spec.internet;
  structured["keep"] = spec.keep;
  structured["default"] = make_default;
  if (auto v = created.sandbox.find("envdVersion"); v != created.sandbox.end()) {
    structured["envd_version"] = *v;
  }
  co_return TextResult(std::move(text) + "\n", std::move(structured));
}

http::Task<Result<json>> SandboxTools::ListSandboxesTool(const json& args) {
  ListCommand cmd;
  for (const auto& s : StringList(args, "state")) cmd.states.push_back(s);
  cmd.metadata = StringMap(args, "metadata");
  KilndClient kilnd = Client();
  json entries = json::array();
  std::string token;
  std::set<std::string> seen;
  for (int page = 0;; ++page) {
    if (page >= kMaxPages) co_return Fail(Errc::kInternal, "too many pages from kilnd");
    KILN_CO_ASSIGN_OR_RETURN(http::ClientResponse res,
                             co_await kilnd.Call(http::Verb::get, ListTarget(cmd, token)));
    json items = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
    if (!items.is_array()) co_return Fail(Errc::kInternal, "kilnd sent a malformed sandbox list");
    for (const auto& item : items) {
      if (item.is_object()) entries.push_back(ListedEntry(item, owned_, default_id_));
    }
    token = std::string(res.Header("x-next-token"));
    if (token.empty() || !seen.insert(token).second) break;
  }
  json structured = json::object();
  structured["sandboxes"] = entries;
  co_return TextResult(ListText(entries), std::move(structured));
}

http::Task<Result<json>> SandboxTools::KillSandboxTool(const json& args) {
  std::string id = OptString(args, "sandbox_id").value_or("");
  if (!IsSandboxId(id)) co_return Fail(Errc::kInvalidArgument, "\"" + id + "\" is not a sandbox ID");
  auto st = co_await Kill(id);
  if (!st) {
    if (st.error().code() == Errc::kNotFound) {
      Forget(id);
      co_return Fail(Errc::kNotFound, "sandbox " + id +
                                          " not found (already killed, or its timeout passed)");
    }
    co_return Unexpected(std::move(st).error().Wrap("kill sandbox " + id));
  }
  bool was_default = default_id_ && *default_id_ == id;
  Forget(id);
  std::string text = "Killed sandbox " + id + ".";
  if (was_default) text += " It was the default sandbox; the next call without sandbox_id creates a new one.";
  json structured = json::object();
  structured["sandbox_id"] = id;
  structured["killed"] = true;
  co_return TextResult(std::move(text) + "\n", std::move(structured));
}

// --- execution tools ---

http::Task<Result<json>> SandboxTools::RunCommandTool(const json& args) {
  std::string cmd = OptString(args, "cmd").value_or("");
  if (cmd.empty()) co_return Fail(Errc::kInvalidArgument, "cmd must not be empty");
  bool background = OptBool(args, "background").value_or(false);
  std::optional<int64_t> timeout_s = OptInt(args, "timeout");
  if (!background && !timeout_s) timeout_s = kDefaultCommandTimeoutS;
  KILN_CO_ASSIGN_OR_RETURN(Target target, co_await Resolve(args));
  KilndClient kilnd = Client();
  KILN_CO_ASSIGN_OR_RETURN(SandboxAccess access, co_await kilnd.Access(target.id));
  ProcessClient proc(kilnd, access, OptString(args, "user"));
  ExecSpec spec;
  spec.command = cmd;
  spec.envs = StringMap(args, "env");
  spec.cwd = OptString(args, "cwd");
  spec.stdin = false;
  std::optional<std::chrono::milliseconds> timeout;
  if (timeout_s) timeout = std::chrono::seconds(*timeout_s);
  KILN_CO_TRY(co_await proc.Start(ExecStartRequest(spec), timeout));
  BoundedOutput out(kMaxOutput), err(kMaxOutput);
  std::optional<uint32_t> pid;
  std::optional<ProcessEnd> end;
  std::optional<Error> failure;
  for (;;) {
    auto ev = co_await proc.Next();
    if (!ev) {
      failure.emplace(std::move(ev).error());
      break;
    }
    if (!*ev) break;
    const ProcessEvent& e = **ev;
    if (e.kind == ProcessEvent::Kind::kStart) {
      pid = e.pid;
      if (background) break;
    } else if (e.kind == ProcessEvent::Kind::kStdout || e.kind == ProcessEvent::Kind::kPty) {
      out.Append(e.data);
    } else if (e.kind == ProcessEvent::Kind::kStderr) {
      err.Append(e.data);
    } else if (e.kind == ProcessEvent::Kind::kEnd) {
      end = e.end;
    }
  }
  json structured = json::object();
  structured["sandbox_id"] = target.id;
  if (pid) structured["pid"] = *pid;
  if (background) {
    if (!pid && failure) co_return Unexpected(std::move(*failure).Wrap("start command"));
    if (!pid) co_return Fail(Errc::kInternal, "the command did not start");
    structured["background"] = true;
    std::string text = "Started in the background as PID " + std::to_string(*pid) + " in sandbox " +
                       target.id + ". Its output is not collected: redirect it to a file and "
                       "read that, e.g. `cmd > /tmp/log 2>&1`; stop it with run_command "
                       "`kill " + std::to_string(*pid) + "`.\n" + target.note;
    co_return TextResult(std::move(text), std::move(structured));
  }
  if (failure) {
    if (failure->code() == Errc::kTimeout) {
      structured["timed_out"] = true;
      co_return CommandResult("the command timed out after " + std::to_string(*timeout_s) +
                                  " s and was killed (raise timeout, or use background)",
                              out.Text(), err.Text(), std::move(structured), true, target.note);
    }
    if (!pid) co_return Unexpected(std::move(*failure).Wrap("run command in sandbox " + target.id));
    co_return CommandResult("the command's output stream failed: " + failure->message(), out.Text(),
                            err.Text(), std::move(structured), true, target.note);
  }
  if (!end) {
    co_return CommandResult("the command's output stream ended without an exit status", out.Text(),
                            err.Text(), std::move(structured), true, target.note);
  }
  structured["exit_code"] = end->exited ? json(end->exit_code) : json(nullptr);
  if (!end->status.empty()) structured["status"] = end->status;
  bool failed = !end->exited || end->exit_code != 0;
  co_return CommandResult(Headline(*end), out.Text(), err.Text(), std::move(structured), failed,
                          target.note);
}

http::Task<Result<json>> SandboxTools::RunCodeTool(const json& args) {
  ExecuteSpec spec;
  spec.code = OptString(args, "code").value_or("");
  spec.language = OptString(args, "language");
  spec.context_id = OptString(args, "context_id");
  spec.env = StringMap(args, "env");
  if (spec.language && spec.context_id) {
    // The interpreter refuses both (the context has its own language).
    spec.language.reset();
  }
  int64_t timeout_s = OptInt(args, "timeout").value_or(kDefaultCodeTimeoutS);
  KILN_CO_ASSIGN_OR_RETURN(Target target, co_await Resolve(args));
  std::string template_id;
  if (auto t = templates_.find(target.id); t != templates_.end()) template_id = t->second;
  KilndClient kilnd = Client();
  KILN_CO_ASSIGN_OR_RETURN(SandboxAccess access, co_await kilnd.Access(target.id));
  KILN_CO_ASSIGN_OR_RETURN(http::ClientConnection conn, co_await kilnd.Connect());
  http::ClientRequest req = kilnd.EnvdRequest(access, http::Verb::post, "/execute", std::nullopt);
  req.headers.set("E2b-Sandbox-Port", std::to_string(kInterpPort));
  req.content_type = "application/json";
  req.body = ExecuteRequestBody(spec);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  auto head = co_await conn.SendForStream(std::move(req), std::chrono::seconds(60));
  if (!head) {
    co_return Fail(Errc::kUnavailable, NoInterpreterMessage(target.id, template_id, head.error().message()));
  }
  if (head->status != 200) {
    for (int i = 0; i < 16 && head->body.size() < 64 * 1024; ++i) {
      auto piece = co_await conn.ReadSome(64 * 1024, std::chrono::seconds(10));
      if (!piece || piece->empty()) break;
      head->body += *piece;
    }
    Error e = ResponseError(*head);
    if (head->status == 502 && !IsCodeInterpreterTemplate(template_id)) {
      co_return Fail(Errc::kUnavailable, NoInterpreterMessage(target.id, template_id, e.message()));
    }
    co_return Unexpected(std::move(e).Wrap("run code in sandbox " + target.id));
  }
  ExecutionStream stream;
  std::optional<std::string> broken;
  bool timed_out = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    auto piece = co_await conn.ReadSome(64 * 1024, left);
    if (!piece) {
      if (std::chrono::steady_clock::now() >= deadline || piece.error().code() == Errc::kTimeout) {
        timed_out = true;
      } else {
        broken = piece.error().message();
      }
      break;
    }
    if (piece->empty()) break;
    if (auto st = stream.Feed(*piece); !st) {
      broken = st.error().message();
      break;
    }
  }
  if (!timed_out && !broken) {
    if (auto st = stream.Finish(); !st) broken = st.error().message();
  }
  CodeExecution ex = stream.execution();
  if (timed_out && !ex.error) {
    ex.error = MakeCodeError("TimeoutError", "the cell did not finish within " +
                                                 std::to_string(timeout_s) +
                                                 " s; it was interrupted (raise timeout for long work)");
  } else if (broken && !ex.error) {
    ex.error = MakeCodeError("ConnectionError", "the code interpreter's answer broke off: " + *broken);
  }
  json result = CodeExecutionResult(ex, target.note);
  result["structuredContent"]["sandbox_id"] = target.id;
  co_return result;
}

}  // namespace kiln::cli::mcp
