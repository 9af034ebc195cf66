#include "kilnd/api/api.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "base/log.h"
#include "wire/json_util.h"

namespace kiln::kilnd {
using json = nlohmann::json;
using http::Response;
using http::Verb;

namespace {

constexpr size_t kBodyLimit = 1 << 20;
constexpr int64_t kDefaultPageLimit = 100;
constexpr int64_t kMaxPageLimit = 100;

unsigned StatusFor(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument: return 400;
    case Errc::kUnauthenticated: return 401;
    case Errc::kPermissionDenied: return 403;
    case Errc::kNotFound: return 404;
    case Errc::kAlreadyExists: return 409;
    case Errc::kFailedPrecondition: return 409;
    case Errc::kUnavailable: return 409;
    case Errc::kResourceExhausted: return 429;
    case Errc::kTimeout: return 504;
    default: return 500;
  }
}

Response ErrorResponse(const Error& e) {
  unsigned status = StatusFor(e.code());
  // 409 for a sandbox that is mid-transition as well as for "already paused".
  return Response::JsonError(status, e.message());
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string Time(int64_t ms) { return FormatRfc3339(ms / 1000, (ms % 1000) * 1000000); }

json StringMap(const std::map<std::string, std::string>& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

json SandboxJson(const SandboxRow& r, const ApiOptions& o) {
  json j = json::object();
  j["sandboxID"] = r.id;
  j["templateID"] = r.template_id;
  j["alias"] = r.template_id;
  j["clientID"] = "kiln";
  j["envdVersion"] = o.envd_version;
  j["envdAccessToken"] = r.envd_token;
  j["trafficAccessToken"] = nullptr;
  j["domain"] = o.domain.empty() ? json(nullptr) : json(o.domain);
  return j;
}

json ListedJson(const SandboxRow& r, const ApiOptions& o) {
  json j = json::object();
  j["sandboxID"] = r.id;
  j["templateID"] = r.template_id;
  j["alias"] = r.template_id;
  j["clientID"] = "kiln";
  j["startedAt"] = Time(r.started_at_ms);
  j["endAt"] = Time(r.end_at_ms);
  j["cpuCount"] = r.cpu_count;
  j["memoryMB"] = r.memory_mb;
  j["diskSizeMB"] = r.disk_mb;
  j["state"] = r.state;
  j["envdVersion"] = o.envd_version;
  j["metadata"] = StringMap(r.metadata);
  j["volumeMounts"] = json::array();
  return j;
}

json DetailJson(const SandboxRow& r, const ApiOptions& o) {
  json j = ListedJson(r, o);
  j["allowInternetAccess"] = r.allow_internet;
  j["envdAccessToken"] = r.envd_token;
  j["domain"] = o.domain.empty() ? json(nullptr) : json(o.domain);
  json lifecycle = json::object();
  lifecycle["onTimeout"] = r.auto_pause ? "pause" : "kill";
  lifecycle["autoResume"] = r.auto_resume;
  j["lifecycle"] = lifecycle;
  return j;
}

json RecordJson(const SandboxRow& r, const ApiOptions& o) {
  json j = DetailJson(r, o);
  j.erase("envdAccessToken");
  if (!r.end_reason.empty()) j["endReason"] = r.end_reason;
  if (r.ended_at_ms > 0) j["endedAt"] = Time(r.ended_at_ms);
  return j;
}

json MetricJson(const MetricSample& m) {
  json j = json::object();
  j["timestamp"] = Time(m.timestamp_ms);
  j["timestampUnix"] = m.timestamp_ms / 1000;
  j["cpuCount"] = m.cpu_count;
  j["cpuUsedPct"] = m.cpu_used_pct;
  j["memUsed"] = m.mem_used;
  j["memTotal"] = m.mem_total;
  j["memCache"] = m.mem_cache;
  j["diskUsed"] = m.disk_used;
  j["diskTotal"] = m.disk_total;
  return j;
}

json StatusJson(const SandboxManager& m) {
  json j = json::object();
  json pool = json::object();
  for (const auto& [name, ready] : m.PoolStatus()) {
    json p = json::object();
    p["ready"] = ready.first;
    p["target"] = ready.second;
    pool[name] = p;
  }
  j["pool"] = pool;
  size_t running = 0, paused = 0;
  for (const auto& r : m.List()) (r.state == "paused" ? paused : running)++;
  j["running"] = running;
  j["paused"] = paused;
  return j;
}

// Parses a JSON object body; an empty body is an empty object.
Result<json> ParseObject(const std::string& body) {
  if (body.empty()) return json::object();
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Fail(Errc::kInvalidArgument, "request body must be a JSON object");
  }
  return j;
}

// The request body as a JSON object (limited to kBodyLimit; empty = {}).
http::Task<Result<json>> ReadObject(http::Exchange& ex) {
  auto body = co_await ex.ReadBody(kBodyLimit);
  if (!body) co_return Unexpected(std::move(body).error());
  co_return ParseObject(*body);
}

Result<CreateParams> ParseCreate(const json& j) {
  CreateParams p;
  KILN_ASSIGN_OR_RETURN(auto tmpl, wire::GetString(j, "templateID", "template_id"));
  if (!tmpl || tmpl->empty()) return Fail(Errc::kInvalidArgument, "templateID is required");
  p.template_id = *tmpl;
  KILN_ASSIGN_OR_RETURN(auto timeout, wire::GetInt(j, "timeout"));
  if (timeout) {
    if (*timeout < 0) return Fail(Errc::kInvalidArgument, "timeout must not be negative");
    p.timeout_s = *timeout;
  }
  KILN_ASSIGN_OR_RETURN(auto metadata, wire::GetStringMap(j, "metadata"));
  if (metadata) p.metadata = std::move(*metadata);
  KILN_ASSIGN_OR_RETURN(auto env, wire::GetStringMap(j, "envVars", "env_vars"));
  if (env) p.env_vars = std::move(*env);
  KILN_ASSIGN_OR_RETURN(auto internet, wire::GetBool(j, "allow_internet_access", "allowInternetAccess"));
  if (internet) p.allow_internet = *internet;
  KILN_ASSIGN_OR_RETURN(auto auto_pause, wire::GetBool(j, "autoPause", "auto_pause"));
  if (auto_pause) p.auto_pause = *auto_pause;
  KILN_ASSIGN_OR_RETURN(auto auto_resume, wire::GetObject(j, "autoResume", "auto_resume"));
  if (auto_resume) {
    KILN_ASSIGN_OR_RETURN(auto enabled, wire::GetBool(*auto_resume, "enabled"));
    p.auto_resume = enabled.value_or(false);
  }
  if (p.auto_resume && !p.auto_pause) {
    return Fail(Errc::kInvalidArgument, "autoResume needs autoPause (onTimeout: pause)");
  }
  if (const json* net = wire::FindField(j, "network"); net && net->is_object()) {
    // An explicit deny of everything is the same as allow_internet_access: false.
    if (auto deny = net->find("denyOut"); deny != net->end() && deny->is_array()) {
      for (const auto& d : *deny) {
        if (d.is_string() && d.get<std::string>() == "0.0.0.0/0") p.allow_internet = false;
      }
    }
  }
  return p;
}

// The `metadata` list filter: "k1=v1&k2=v2" with each part escaped again by the SDK.
Result<std::map<std::string, std::string>> ParseMetadataFilter(const std::string& raw) {
  std::map<std::string, std::string> out;
  auto once = http::PercentDecode(raw, false);
  if (!once) return Fail(Errc::kInvalidArgument, "bad metadata filter");
  std::string_view rest = *once;
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view part = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) return Fail(Errc::kInvalidArgument, "bad metadata filter");
    auto k = http::PercentDecode(part.substr(0, eq), false);
    auto v = http::PercentDecode(part.substr(eq + 1), false);
    if (!k || !v) return Fail(Errc::kInvalidArgument, "bad metadata filter");
    out[*k] = *v;
  }
  return out;
}

Result<int64_t> UnixSecondsParam(const http::RequestHead& head, const char* name, int64_t dflt) {
  auto v = head.Query(name);
  if (!v || v->empty()) return dflt;
  char* e = nullptr;
  long long n = std::strtoll(v->c_str(), &e, 10);
  if (*e != '\0') return Fail(Errc::kInvalidArgument, std::string(name) + " must be unix seconds");
  return n;
}

std::vector<std::string> Segments(std::string_view path) {
  std::vector<std::string> out;
  while (!path.empty()) {
    size_t s = path.find('/');
    if (s == 0) {
      path.remove_prefix(1);
      continue;
    }
    out.emplace_back(path.substr(0, s));
    if (s == std::string_view::npos) break;
    path.remove_prefix(s + 1);
  }
  return out;
}

}  // namespace

Api::Api(SandboxManager& manager, ApiKeys& keys, ApiOptions options)
    : manager_(manager), keys_(keys), options_(std::move(options)) {}

http::Task<void> Api::Handle(http::Exchange& ex) {
  const auto& head = ex.request();
  std::vector<std::string> seg = Segments(head.path);
  Verb m = head.method;
  if (seg.size() == 1 && seg[0] == "health" && m == Verb::get) {
    http::Response r;
    r.status = 200;
    r.headers.set("Content-Type", "text/plain");
    r.body = "OK";
    co_await ex.Respond(std::move(r));
    co_return;
  }
  if (!keys_.Verify(head.Header("x-api-key"))) {
    co_await ex.Respond(Response::JsonError(401, "Invalid API key"));
    co_return;
  }
  if (seg.size() == 2 && seg[0] == "kiln" && seg[1] == "status" && m == Verb::get) {
    // kiln's own: warm pool fill and sandbox count (for operators and benchmarks).
    co_await ex.Respond(Response::Json(200, Dump(StatusJson(manager_))));
    co_return;
  }
  if (seg.size() == 3 && seg[0] == "kiln" && seg[1] == "sandboxes" && m == Verb::get) {
    // kiln's own: what happened to a sandbox, also after it was killed.
    auto row = manager_.Record(seg[2]);
    if (!row) co_return (void)co_await ex.Respond(ErrorResponse(row.error()));
    co_await ex.Respond(Response::Json(200, Dump(RecordJson(*row, options_))));
    co_return;
  }
  bool v2 = !seg.empty() && seg[0] == "v2";
  if (v2) seg.erase(seg.begin());
  if (seg.empty() || seg[0] != "sandboxes") {
    co_await ex.Respond(Response::JsonError(404, "not found: " + head.path));
    co_return;
  }
  if (seg.size() == 1) {
    if (m == Verb::post) co_return co_await Create(ex);
    if (m == Verb::get) co_return co_await ListSandboxes(ex, v2);
  } else {
    const std::string& id = seg[1];
    if (seg.size() == 2) {
      if (m == Verb::get) co_return co_await GetSandbox(ex, id);
      if (m == Verb::delete_) co_return co_await KillSandbox(ex, id);
    } else if (seg.size() == 3 && m == Verb::post) {
      if (seg[2] == "connect") co_return co_await ConnectOrResume(ex, id, false);
      if (seg[2] == "resume") co_return co_await ConnectOrResume(ex, id, true);
      if (seg[2] == "timeout") co_return co_await SetTimeout(ex, id);
      if (seg[2] == "refreshes") co_return co_await Refresh(ex, id);
      if (seg[2] == "pause") co_return co_await PauseSandbox(ex, id);
    } else if (seg.size() == 3 && m == Verb::get && seg[2] == "metrics") {
      co_return co_await GetMetrics(ex, id);
    }
  }
  co_await ex.Respond(Response::JsonError(404, "not found: " + head.path));
}

http::Task<void> Api::Create(http::Exchange& ex) {
  auto j = co_await ReadObject(ex);
  if (!j) co_return (void)co_await ex.Respond(ErrorResponse(j.error()));
  auto params = ParseCreate(*j);
  if (!params) co_return (void)co_await ex.Respond(ErrorResponse(params.error()));
  auto row = co_await manager_.Create(std::move(*params));
  if (!row) {
    KILN_LOG(Warn, "create failed", {"error", row.error().message()});
    co_return (void)co_await ex.Respond(ErrorResponse(row.error()));
  }
  co_await ex.Respond(Response::Json(201, Dump(SandboxJson(*row, options_))));
}

http::Task<void> Api::ConnectOrResume(http::Exchange& ex, const std::string& id, bool v1_resume) {
  auto j = co_await ReadObject(ex);
  if (!j) co_return (void)co_await ex.Respond(ErrorResponse(j.error()));
  auto timeout = wire::GetInt(*j, "timeout");
  if (!timeout) co_return (void)co_await ex.Respond(ErrorResponse(timeout.error()));
  if (*timeout && **timeout < 0) {
    co_return (void)co_await ex.Respond(Response::JsonError(400, "timeout must not be negative"));
  }
  if (v1_resume) {
    // The legacy resume endpoint only resumes: a running sandbox is a conflict.
    auto cur = manager_.Get(id);
    if (cur && cur->state == "running") {
      co_return (void)co_await ex.Respond(Response::JsonError(409, "sandbox " + id + " is already running"));
    }
  }
  auto res = co_await manager_.Connect(id, timeout->value_or(300));
  if (!res) co_return (void)co_await ex.Respond(ErrorResponse(res.error()));
  co_await ex.Respond(Response::Json(res->second ? 201 : 200, Dump(SandboxJson(res->first, options_))));
}

http::Task<void> Api::ListSandboxes(http::Exchange& ex, bool v2) {
  const auto& head = ex.request();
  std::vector<std::string> states;
  for (const auto& [k, v] : head.query) {
    if (k != "state") continue;
    std::string_view rest = v;
    while (!rest.empty()) {
      size_t c = rest.find(',');
      std::string s(rest.substr(0, c));
      rest = c == std::string_view::npos ? std::string_view() : rest.substr(c + 1);
      if (s.empty()) continue;
      if (s != "running" && s != "paused") {
        co_return (void)co_await ex.Respond(Response::JsonError(400, "unknown state \"" + s + "\""));
      }
      states.push_back(s);
    }
  }
  // v1 lists only running sandboxes.
  if (states.empty()) states = v2 ? std::vector<std::string>{"running", "paused"}
                                  : std::vector<std::string>{"running"};
  std::map<std::string, std::string> filter;
  if (auto md = head.Query("metadata"); md && !md->empty()) {
    auto f = ParseMetadataFilter(*md);
    if (!f) co_return (void)co_await ex.Respond(ErrorResponse(f.error()));
    filter = std::move(*f);
  }
  std::optional<int64_t> started_after;
  if (auto sa = head.Query("startedAfter"); sa && !sa->empty()) {
    auto ns = ParseRfc3339(*sa);
    if (!ns) co_return (void)co_await ex.Respond(Response::JsonError(400, "startedAfter is not RFC 3339"));
    started_after = *ns / 1000000;
  }
  std::string tmpl = head.Query("template").value_or("");
  bool asc = head.Query("order").value_or("desc") == "asc";
  int64_t limit = kDefaultPageLimit;
  if (auto l = head.Query("limit"); l && !l->empty()) {
    char* end = nullptr;
    long long v = std::strtoll(l->c_str(), &end, 10);
    if (*end != '\0' || v < 1) co_return (void)co_await ex.Respond(Response::JsonError(400, "limit must be a positive integer"));
    limit = std::min<int64_t>(v, kMaxPageLimit);
  }

  std::vector<SandboxRow> rows;
  for (auto& r : manager_.List()) {
    if (std::find(states.begin(), states.end(), r.state) == states.end()) continue;
    if (!tmpl.empty() && r.template_id != tmpl) continue;
    if (started_after && r.started_at_ms < *started_after) continue;
    bool match = true;
    for (const auto& [k, v] : filter) {
      auto it = r.metadata.find(k);
      match &= it != r.metadata.end() && it->second == v;
    }
    if (match) rows.push_back(std::move(r));
  }
  auto before = [asc](const SandboxRow& a, const SandboxRow& b) {
    if (a.started_at_ms != b.started_at_ms) {
      return asc ? a.started_at_ms < b.started_at_ms : a.started_at_ms > b.started_at_ms;
    }
    return asc ? a.id < b.id : a.id > b.id;
  };
  std::sort(rows.begin(), rows.end(), before);

  // nextToken: base64url("<startedAt ms>__<id>") of the last item of the previous page.
  size_t first = 0;
  if (auto tok = head.Query("nextToken"); tok && !tok->empty()) {
    auto raw = Base64Decode(*tok);
    size_t sep = raw ? raw->find("__") : std::string::npos;
    if (!raw || sep == std::string::npos) {
      co_return (void)co_await ex.Respond(Response::JsonError(400, "invalid nextToken"));
    }
    SandboxRow cursor;
    cursor.started_at_ms = std::strtoll(raw->substr(0, sep).c_str(), nullptr, 10);
    cursor.id = raw->substr(sep + 2);
    while (first < rows.size() && !before(cursor, rows[first])) ++first;
  }
  json out = json::array();
  size_t last = std::min(rows.size(), first + static_cast<size_t>(limit));
  for (size_t i = first; i < last; ++i) out.push_back(ListedJson(rows[i], options_));
  Response r = Response::Json(200, Dump(out));
  if (last < rows.size() && last > first) {
    const SandboxRow& tail = rows[last - 1];
    r.headers.set("X-Next-Token",
                  Base64EncodeNoPad(std::to_string(tail.started_at_ms) + "__" + tail.id));
  }
  r.headers.set("X-Total-Running", std::to_string(std::count_if(
                                       rows.begin(), rows.end(),
                                       [](const SandboxRow& s) { return s.state == "running"; })));
  co_await ex.Respond(std::move(r));
}

http::Task<void> Api::GetSandbox(http::Exchange& ex, const std::string& id) {
  auto row = manager_.Get(id);
  if (!row) co_return (void)co_await ex.Respond(ErrorResponse(row.error()));
  co_await ex.Respond(Response::Json(200, Dump(DetailJson(*row, options_))));
}

http::Task<void> Api::KillSandbox(http::Exchange& ex, const std::string& id) {
  auto killed = co_await manager_.Kill(id);
  if (!killed) co_return (void)co_await ex.Respond(ErrorResponse(killed.error()));
  if (!*killed) {
    co_return (void)co_await ex.Respond(Response::JsonError(404, "sandbox \"" + id + "\" not found"));
  }
  co_await ex.Respond(Response::Empty(204));
}

http::Task<void> Api::SetTimeout(http::Exchange& ex, const std::string& id) {
  auto j = co_await ReadObject(ex);
  if (!j) co_return (void)co_await ex.Respond(ErrorResponse(j.error()));
  auto timeout = wire::GetInt(*j, "timeout");
  if (!timeout) co_return (void)co_await ex.Respond(ErrorResponse(timeout.error()));
  if (!*timeout || **timeout < 0) {
    co_return (void)co_await ex.Respond(Response::JsonError(400, "timeout (seconds, >= 0) is required"));
  }
  auto st = manager_.SetTimeout(id, **timeout);
  if (!st) co_return (void)co_await ex.Respond(ErrorResponse(st.error()));
  co_await ex.Respond(Response::Empty(204));
}

http::Task<void> Api::Refresh(http::Exchange& ex, const std::string& id) {
  auto j = co_await ReadObject(ex);
  if (!j) co_return (void)co_await ex.Respond(ErrorResponse(j.error()));
  auto duration = wire::GetInt(*j, "duration");
  if (!duration) co_return (void)co_await ex.Respond(ErrorResponse(duration.error()));
  auto cur = manager_.Get(id);
  if (!cur) co_return (void)co_await ex.Respond(ErrorResponse(cur.error()));
  // Refresh only ever extends the end time.
  int64_t secs = duration->value_or(60);
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  if (now_ms + secs * 1000 > cur->end_at_ms) {
    auto st = manager_.SetTimeout(id, secs);
    if (!st) co_return (void)co_await ex.Respond(ErrorResponse(st.error()));
  }
  co_await ex.Respond(Response::Empty(204));
}

http::Task<void> Api::PauseSandbox(http::Exchange& ex, const std::string& id) {
  auto body = co_await ex.ReadBody(kBodyLimit);
  if (!body) co_return (void)co_await ex.Respond(ErrorResponse(body.error()));
  auto st = co_await manager_.Pause(id);
  if (!st) co_return (void)co_await ex.Respond(ErrorResponse(st.error()));
  co_await ex.Respond(Response::Empty(204));
}

http::Task<void> Api::GetMetrics(http::Exchange& ex, const std::string& id) {
  const auto& head = ex.request();
  int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  auto start = UnixSecondsParam(head, "start", 0);
  auto end = UnixSecondsParam(head, "end", now_s);
  if (!start || !end) {
    co_return (void)co_await ex.Respond(ErrorResponse(!start ? start.error() : end.error()));
  }
  auto samples = manager_.Metrics(id, *start, *end);
  if (!samples) co_return (void)co_await ex.Respond(ErrorResponse(samples.error()));
  json out = json::array();
  for (const auto& m : *samples) out.push_back(MetricJson(m));
  co_await ex.Respond(Response::Json(200, Dump(out)));
}

}  // namespace kiln::kilnd
