// kiln sandbox create | list | kill | pause | resume | info: control API calls.

#include <nlohmann/json.hpp>
#include <set>

#include "cli/commands.h"
#include "cli/table.h"
#include "http/connect.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

constexpr int kPageLimit = 100;
constexpr int kMaxPages = 10000;

Result<json> ParseJson(const std::string& body, std::string_view what, bool array) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || (array ? !j.is_array() : !j.is_object())) {
    return Fail(Errc::kInternal, "kilnd sent a malformed " + std::string(what));
  }
  return j;
}

std::string Str(const json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

std::map<std::string, std::string> StrMap(const json& obj, std::string_view key) {
  std::map<std::string, std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_object()) return out;
  for (const auto& [k, v] : it->items()) out[k] = v.is_string() ? v.get<std::string>() : v.dump();
  return out;
}

std::string Pretty(const json& j) {
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::vector<std::string> ListRow(const json& s, std::chrono::system_clock::time_point now) {
  std::string tmpl = Str(s, "alias");
  if (tmpl.empty()) tmpl = Str(s, "templateID");
  return {Str(s, "sandboxID"),
          tmpl,
          Str(s, "state"),
          RelativeTime(Str(s, "startedAt"), now),
          RelativeTime(Str(s, "endAt"), now),
          FormatMetadata(StrMap(s, "metadata"))};
}

std::string ListTable(const json& all, std::chrono::system_clock::time_point now) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : all) {
    if (s.is_object()) rows.push_back(ListRow(s, now));
  }
  return FormatTable({"ID", "TEMPLATE", "STATE", "STARTED", "ENDS", "METADATA"}, rows);
}

std::string WithAge(const std::string& time, std::chrono::system_clock::time_point now) {
  if (time.empty()) return "-";
  return time + " (" + RelativeTime(time, now) + ")";
}

std::string InfoText(const json& s, std::chrono::system_clock::time_point now) {
  std::string tmpl = Str(s, "alias");
  if (tmpl.empty()) tmpl = Str(s, "templateID");
  std::string internet = "-";
  if (auto it = s.find("allowInternetAccess"); it != s.end() && it->is_boolean()) {
    internet = it->get<bool>() ? "allowed" : "blocked";
  }
  std::string on_timeout = "-";
  if (auto it = s.find("lifecycle"); it != s.end() && it->is_object()) {
    on_timeout = Str(*it, "onTimeout");
  }
  std::vector<std::vector<std::string>> rows = {
      {"Template", tmpl},
      {"State", Str(s, "state")},
      {"Started", WithAge(Str(s, "startedAt"), now)},
      {"Ends", WithAge(Str(s, "endAt"), now)},
      {"On timeout", on_timeout.empty() ? "-" : on_timeout},
      {"CPUs", Str(s, "cpuCount")},
      {"Memory", Str(s, "memoryMB") + " MB"},
      {"Disk", Str(s, "diskSizeMB") + " MB"},
      {"Internet", internet},
      {"Envd", Str(s, "envdVersion")},
      {"Metadata", FormatMetadata(StrMap(s, "metadata"))},
  };
  // The first row doubles as FormatTable's header.
  return FormatTable({"ID", Str(s, "sandboxID")}, rows);
}

// What the commands print; kept out of coroutine bodies, where g++ 12 mishandles temporaries
// of conditional expressions.
std::string CreateOutput(const json& sandbox, bool as_json) {
  return as_json ? Pretty(sandbox) : Str(sandbox, "sandboxID") + "\n";
}

std::string ListOutput(const json& all, bool as_json, std::chrono::system_clock::time_point now) {
  return as_json ? Pretty(all) : ListTable(all, now);
}

std::string InfoOutput(const json& sandbox, bool as_json,
                       std::chrono::system_clock::time_point now) {
  return as_json ? Pretty(sandbox) : InfoText(sandbox, now);
}

json ResumeBody(const ResumeCommand& cmd) {
  json body = json::object();
  if (cmd.timeout_s) body["timeout"] = *cmd.timeout_s;
  return body;
}

}  // namespace

std::string CreateRequestBody(const CreateCommand& cmd) {
  json body = json::object();
  body["templateID"] = cmd.template_id;
  if (cmd.timeout_s) body["timeout"] = *cmd.timeout_s;
  if (!cmd.metadata.empty()) body["metadata"] = cmd.metadata;
  if (!cmd.envs.empty()) body["envVars"] = cmd.envs;
  if (cmd.no_internet) body["allow_internet_access"] = false;
  return http::connect::Dump(body);
}

std::string MetadataQueryValue(const std::map<std::string, std::string>& metadata) {
  // The SDK escapes keys and values (encodeURIComponent), joins them with URLSearchParams
  // (which escapes them again) and sends that as one query value (escaped once more).
  std::string joined;
  for (const auto& [k, v] : metadata) {
    if (!joined.empty()) joined += '&';
    joined += QueryEscape(QueryEscape(k)) + "=" + QueryEscape(QueryEscape(v));
  }
  return QueryEscape(joined);
}

std::string ListTarget(const ListCommand& cmd, const std::string& next_token) {
  std::string target = "/v2/sandboxes?limit=" + std::to_string(kPageLimit);
  if (!cmd.states.empty()) {
    std::string states;
    for (const auto& s : cmd.states) states += (states.empty() ? "" : ",") + s;
    target += "&state=" + QueryEscape(states);
  }
  if (!cmd.metadata.empty()) target += "&metadata=" + MetadataQueryValue(cmd.metadata);
  if (!next_token.empty()) target += "&nextToken=" + QueryEscape(next_token);
  return target;
}

http::Task<Result<int>> RunCreate(CommandContext& ctx, const CreateCommand& cmd) {
  // Creating may wait for a sandbox to boot: allow more than a normal call.
  KILN_CO_ASSIGN_OR_RETURN(
      http::ClientResponse res,
      co_await ctx.kilnd.Call(http::Verb::post, "/v2/sandboxes", CreateRequestBody(cmd),
                              std::chrono::minutes(5)));
  KILN_CO_ASSIGN_OR_RETURN(json sandbox, ParseJson(res.body, "sandbox", false));
  std::string id = Str(sandbox, "sandboxID");
  if (id.empty()) co_return Fail(Errc::kInternal, "kilnd's answer has no sandboxID");
  KILN_CO_TRY(WriteAll(ctx.io.out, CreateOutput(sandbox, cmd.json)));
  co_return 0;
}

http::Task<Result<int>> RunList(CommandContext& ctx, const ListCommand& cmd) {
  json all = json::array();
  std::string token;
  std::set<std::string> seen_tokens;
  for (int page = 0;; ++page) {
    if (page >= kMaxPages) co_return Fail(Errc::kInternal, "too many pages from kilnd");
    KILN_CO_ASSIGN_OR_RETURN(http::ClientResponse res,
                             co_await ctx.kilnd.Call(http::Verb::get, ListTarget(cmd, token)));
    KILN_CO_ASSIGN_OR_RETURN(json items, ParseJson(res.body, "sandbox list", true));
    for (auto& item : items) all.push_back(std::move(item));
    token = std::string(res.Header("x-next-token"));
    if (token.empty()) break;
    // A server that hands out the same token twice would make this loop forever.
    if (!seen_tokens.insert(token).second) {
      co_return Fail(Errc::kInternal, "kilnd repeated a page token");
    }
  }
  KILN_CO_TRY(WriteAll(ctx.io.out, ListOutput(all, cmd.json, ctx.env.Now())));
  co_return 0;
}

http::Task<Result<int>> RunKill(CommandContext& ctx, const KillCommand& cmd) {
  int status = 0;
  for (const auto& id : cmd.ids) {
    auto res = co_await ctx.kilnd.Call(http::Verb::delete_, "/sandboxes/" + QueryEscape(id));
    if (!res) {
      // Unreachable kilnd fails every id the same way: stop at the first.
      if (res.error().code() == Errc::kUnavailable) co_return Unexpected(std::move(res).error());
      PrintError(ctx.io.err, res.error().message());
      status = 1;
    }
  }
  co_return status;
}

http::Task<Result<int>> RunPause(CommandContext& ctx, const PauseCommand& cmd) {
  auto res = co_await ctx.kilnd.Call(http::Verb::post, "/sandboxes/" + QueryEscape(cmd.id) + "/pause");
  if (!res) co_return Unexpected(std::move(res).error());
  co_return 0;
}

http::Task<Result<int>> RunResume(CommandContext& ctx, const ResumeCommand& cmd) {
  auto res = co_await ctx.kilnd.Call(http::Verb::post,
                                     "/v2/sandboxes/" + QueryEscape(cmd.id) + "/connect",
                                     http::connect::Dump(ResumeBody(cmd)), std::chrono::minutes(5));
  if (!res) co_return Unexpected(std::move(res).error());
  // 201: resumed; 200: it was running already.
  if (res->status == 200) {
    PrintError(ctx.io.err, "sandbox " + cmd.id + " was already running");
  }
  co_return 0;
}

http::Task<Result<int>> RunInfo(CommandContext& ctx, const InfoCommand& cmd) {
  auto res = co_await ctx.kilnd.Call(http::Verb::get, "/sandboxes/" + QueryEscape(cmd.id));
  if (!res) co_return Unexpected(std::move(res).error());
  KILN_CO_ASSIGN_OR_RETURN(json sandbox, ParseJson(res->body, "sandbox", false));
  KILN_CO_TRY(WriteAll(ctx.io.out, InfoOutput(sandbox, cmd.json, ctx.env.Now())));
  co_return 0;
}

}  // namespace kiln::cli
