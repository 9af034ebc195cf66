#include "interp/server.h"

#include <sys/timerfd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "base/log.h"
#include "base/scope_exit.h"
#include "http/client.h"
#include "interp/output.h"

namespace kiln::interp {
namespace asio = boost::asio;
using json = nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
constexpr milliseconds kClientCheck{1000};

// One /execute: the execution coroutine produces lines, the request's coroutine writes them.
struct InterpServer::Run {
  explicit Run(asio::any_io_executor ex) : wake(ex) {}

  std::shared_ptr<Context> context;
  std::string code;
  std::map<std::string, std::string> env_vars;  // per call
  std::map<std::string, std::string> global_env;

  std::deque<std::string> lines;
  size_t pending_bytes = 0;
  bool truncated = false;
  bool saw_error = false;
  bool done = false;
  bool client_gone = false;
  // The kernel while the user's code runs (to interrupt it when the client leaves).
  std::shared_ptr<Kernel> executing;
  asio::steady_timer wake;
  size_t max_pending = 0;

  // Stream text that does not end a line is held back briefly and joined with what follows:
  // kernels flush print("x") as "x" and "\n" now and then, and clients expect whole lines.
  static constexpr milliseconds kHoldPartial{50};
  std::optional<json> held;
  Clock::time_point held_since;

  void Push(json line) {
    std::string type = line.value("type", "");
    bool is_stream = type == "stdout" || type == "stderr";
    if (!is_stream) {
      FlushHeld();
      if (type == "error") saw_error = true;
      Append(line);
      return;
    }
    if (held && held->value("type", "") == type) {
      (*held)["text"] = (*held)["text"].get<std::string>() + line["text"].get<std::string>();
    } else {
      FlushHeld();
      held = std::move(line);
      held_since = Clock::now();
    }
    const std::string& text = (*held)["text"].get_ref<const std::string&>();
    if (text.empty() || text.back() == '\n' || text.size() > (64u << 10)) FlushHeld();
    wake.cancel();
  }
  void FlushHeld() {
    if (!held) return;
    json line = std::move(*held);
    held.reset();
    if (pending_bytes > max_pending) {
      if (!truncated) {
        truncated = true;
        Append(StreamLine("stderr", "[kiln-interp: output dropped, the client reads too slowly]\n",
                          StreamTimestamp()));
      }
      return;
    }
    Append(line);
  }
  void Append(const json& line) {
    std::string text = Serialize(line);
    pending_bytes += text.size();
    lines.push_back(std::move(text));
    wake.cancel();
  }
  void Finish() {
    FlushHeld();
    done = true;
    wake.cancel();
  }
  void ClientGone() {
    if (client_gone) return;
    client_gone = true;
    lines.clear();
    pending_bytes = 0;
    if (executing) (void)executing->Interrupt();
  }
};

namespace {

http::Response Text(unsigned status, std::string text) {
  http::Response r;
  r.status = status;
  r.headers.set(boost::beast::http::field::content_type, "text/plain; charset=utf-8");
  r.body = std::move(text);
  return r;
}

// `{}` or an object of strings: anything else is a 400 for the caller.
std::optional<std::map<std::string, std::string>> StringMap(const json& j) {
  std::map<std::string, std::string> out;
  if (j.is_null()) return out;
  if (!j.is_object()) return std::nullopt;
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string()) return std::nullopt;
    out[k] = v.get<std::string>();
  }
  return out;
}

json ContextJson(const Context& c) {
  json j = json::object();
  j["id"] = c.id;
  j["language"] = LanguageName(c.language);
  j["cwd"] = c.cwd;
  return j;
}

// The per-call changes and what undoes them (the global value again, or unset).
std::map<std::string, std::optional<std::string>> Changes(const std::map<std::string, std::string>& vars) {
  std::map<std::string, std::optional<std::string>> out;
  for (const auto& [k, v] : vars) out[k] = v;
  return out;
}
std::map<std::string, std::optional<std::string>> Reverts(
    const std::map<std::string, std::string>& vars, const std::map<std::string, std::string>& global) {
  std::map<std::string, std::optional<std::string>> out;
  for (const auto& [k, v] : vars) {
    auto g = global.find(k);
    out[k] = g == global.end() ? std::nullopt : std::optional<std::string>(g->second);
  }
  return out;
}

// A string member of a kernel's reply, whatever the kernel put there.
std::string Str(const json& j, const char* key, std::string fallback = "") {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

json EndLine() {
  json j = json::object();
  j["type"] = "end_of_execution";
  return j;
}
json KeepaliveLine() {
  json j = json::object();
  j["type"] = "keepalive";
  return j;
}

}  // namespace

InterpServer::InterpServer(asio::any_io_executor executor, Contexts& contexts, ServerOptions options)
    : executor_(std::move(executor)),
      contexts_(contexts),
      options_(std::move(options)),
      clock_(WallMinusMonotonicMs()) {}

InterpServer::~InterpServer() = default;

http::Task<Status> InterpServer::StartDefaults() {
  auto python = co_await contexts_.Default(Language::kPython);
  if (!python) co_return Unexpected(std::move(python).error());
  auto javascript = co_await contexts_.Default(Language::kJavaScript);
  if (!javascript) co_return Unexpected(std::move(javascript).error());
  ready_ = true;
  co_return Status();
}

http::Task<void> InterpServer::StartDefaultsLogged() {
  auto st = co_await StartDefaults();
  if (!st) {
    KILN_LOG(Error, "default contexts failed", {"error", st.error().message()});
  } else {
    KILN_LOG(Info, "default contexts ready");
  }
}

http::Task<void> InterpServer::ReseedIfRestored(Context& context) {
  // A kernel that lived through a restore of the template's snapshot shares its random
  // generators' state with every other sandbox restored from it: reseed them before the user's
  // code runs. (One that ran the user's code was restored from its own sandbox's pause.)
  uint64_t generation = clock_.Update(WallMinusMonotonicMs());
  if (context.seeded_generation == generation || !context.kernel || !context.kernel->alive()) {
    co_return;
  }
  if (std::string code = ReseedCode(context.language); !code.empty() && !context.user_code_ran) {
    auto seeded = co_await RunSilent(*context.kernel, std::move(code));
    if (!seeded) {
      KILN_LOG(Warn, "kernel not reseeded", {"context", context.id},
               {"error", seeded.error().message()});
    } else if (seeded->status != "ok") {
      KILN_LOG(Warn, "kernel not reseeded", {"context", context.id},
               {"error", seeded->content.value("evalue", seeded->status)});
    }
  }
  context.seeded_generation = generation;
}

http::Task<void> InterpServer::WatchClock() {
  // A realtime timer far in the future with TFD_TIMER_CANCEL_ON_SET: its read fails with
  // ECANCELED as soon as anyone sets the clock.
  int raw = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
  if (raw < 0) {
    KILN_LOG(Warn, "no clock watch (kernels are reseeded at their next cell)",
             {"error", strerror(errno)});
    co_return;
  }
  asio::posix::stream_descriptor fd(executor_, raw);
  for (;;) {
    itimerspec far{};
    far.it_value.tv_sec = time(nullptr) + 10 * 365 * 86400;
    if (timerfd_settime(fd.native_handle(), TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &far,
                        nullptr) < 0) {
      KILN_LOG(Warn, "no clock watch (kernels are reseeded at their next cell)",
               {"error", strerror(errno)});
      co_return;
    }
    boost::system::error_code ec;
    co_await fd.async_wait(asio::posix::stream_descriptor::wait_read,
                           asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;  // the executor is stopping
    uint64_t expirations = 0;
    if (read(fd.native_handle(), &expirations, sizeof expirations) < 0 && errno != ECANCELED &&
        errno != EAGAIN) {
      KILN_LOG(Warn, "clock watch failed", {"error", strerror(errno)});
      co_return;
    }
    // envd sets the clock only when it lags by more than a second, which is below the
    // detector's threshold for a jump noticed at a cell.
    clock_.NewGeneration(WallMinusMonotonicMs());
    // The contexts in turn, each under its mutex (a cell waits for its kernel's reseed).
    for (const std::shared_ptr<Context>& context : contexts_.List()) {
      co_await context->mutex.Lock();
      if (!context->removed) co_await ReseedIfRestored(*context);
      context->mutex.Unlock();
    }
  }
}

http::Task<Result<std::map<std::string, std::string>>> InterpServer::GlobalEnv(std::string token) {
  if (global_env_ && ConstantTimeEquals(token, accepted_token_)) co_return *global_env_;
  KILN_CO_ASSIGN_OR_RETURN(auto conn, co_await http::ClientConnection::Connect(
                                          options_.envd_host, options_.envd_port, milliseconds(2000)));
  http::ClientRequest req;
  req.target = "/envs";
  if (!token.empty()) req.headers.set("X-Access-Token", token);
  KILN_CO_ASSIGN_OR_RETURN(auto res, co_await conn.Send(std::move(req), milliseconds(5000)));
  if (res.status == 401 || res.status == 403) {
    co_return Unexpected(Error(Errc::kPermissionDenied, "invalid access token"));
  }
  if (res.status != 200) {
    co_return Unexpected(Error(Errc::kUnavailable, "agent /envs answered " + std::to_string(res.status)));
  }
  json j = json::parse(res.body, nullptr, false);
  auto env = StringMap(j);
  if (j.is_discarded() || !env) co_return Unexpected(Error(Errc::kInternal, "agent /envs: not an object of strings"));
  global_env_ = *env;
  accepted_token_ = token;
  co_return *env;
}

http::Task<void> InterpServer::Handle(http::Exchange& ex) {
  const http::RequestHead& req = ex.request();
  const std::string& path = req.path;
  using http::Verb;
  if (path == "/health" && req.method == Verb::get) {
    co_await ex.Respond(http::Response::Json(200, "\"OK\""));
  } else if (path == "/ready" && req.method == Verb::get) {
    // (g++ 12 mishandles a conditional temporary inside co_await: name the response first.)
    http::Response response = http::Response::JsonError(503, "default contexts are starting");
    if (ready_) response = http::Response::Json(200, "\"ready\"");
    co_await ex.Respond(std::move(response));
  } else if (path == "/execute" && req.method == Verb::post) {
    co_await HandleExecute(ex);
  } else if (path == "/contexts" && req.method == Verb::post) {
    co_await HandleCreateContext(ex);
  } else if (path == "/contexts" && req.method == Verb::get) {
    co_await ex.Respond(ListContexts());
  } else if (path.starts_with("/contexts/")) {
    std::string rest = path.substr(10);
    bool restart = rest.ends_with("/restart");
    std::string id = restart ? rest.substr(0, rest.size() - 8) : rest;
    auto context = contexts_.Find(id);
    if (id.empty() || id.find('/') != std::string::npos ||
        (restart ? req.method != Verb::post : req.method != Verb::delete_)) {
      co_await ex.Respond(Text(404, "Not Found"));
    } else if (!context) {
      co_await ex.Respond(Text(404, "Context " + id + " not found"));
    } else if (restart) {
      auto st = co_await contexts_.Restart(context);
      http::Response response = http::Response::Json(200, "null");
      if (!st) response = Text(500, "Failed to restart context " + id + ": " + st.error().message());
      co_await ex.Respond(std::move(response));
    } else {
      auto st = contexts_.Remove(id);
      http::Response response = http::Response::Json(200, "null");
      if (!st) response = Text(404, st.error().message());
      co_await ex.Respond(std::move(response));
    }
  } else {
    co_await ex.Respond(Text(404, "Not Found"));
  }
}

http::Response InterpServer::ListContexts() const {
  json list = json::array();
  for (const auto& c : contexts_.List()) list.push_back(ContextJson(*c));
  return http::Response::Json(200, list.dump());
}

http::Task<void> InterpServer::HandleCreateContext(http::Exchange& ex) {
  auto body = co_await ex.ReadBody(options_.max_body_bytes);
  if (!body) {
    co_await ex.Respond(Text(400, body.error().message()));
    co_return;
  }
  json j = body->empty() ? json::object() : json::parse(*body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    co_await ex.Respond(Text(400, "request body must be a JSON object"));
    co_return;
  }
  std::string language_name = Str(j, "language");
  std::string cwd = Str(j, "cwd");
  auto language = ParseLanguage(language_name);
  if (!language) {
    co_await ex.Respond(Text(500, "Language " + language_name + " is not supported"));
    co_return;
  }
  auto context = co_await contexts_.Create(*language, cwd);
  if (!context) {
    co_await ex.Respond(Text(500, "Failed to create context: " + context.error().message()));
    co_return;
  }
  co_await ex.Respond(http::Response::Json(200, ContextJson(**context).dump()));
}

http::Task<void> InterpServer::HandleExecute(http::Exchange& ex) {
  auto body = co_await ex.ReadBody(options_.max_body_bytes);
  if (!body) {
    co_await ex.Respond(Text(400, body.error().message()));
    co_return;
  }
  json j = json::parse(*body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("code") || !j["code"].is_string()) {
    co_await ex.Respond(Text(400, "request body must be a JSON object with a string \"code\""));
    co_return;
  }
  auto env_vars = StringMap(j.contains("env_vars") ? j["env_vars"] : json());
  if (!env_vars) {
    co_await ex.Respond(Text(400, "env_vars must be an object of strings"));
    co_return;
  }
  bool has_context = j.contains("context_id") && !j["context_id"].is_null();
  bool has_language = j.contains("language") && !j["language"].is_null();
  if (has_context && has_language) {
    co_await ex.Respond(Text(400, "Only one of context_id or language can be provided"));
    co_return;
  }
  std::shared_ptr<Context> context;
  if (has_context) {
    std::string id = Str(j, "context_id");
    context = contexts_.Find(id);
    if (!context) {
      co_await ex.Respond(Text(404, "Context " + id + " not found"));
      co_return;
    }
  } else {
    std::string name = Str(j, "language");
    auto language = ParseLanguage(name);
    if (!language) {
      co_await ex.Respond(Text(500, "Language " + name + " is not supported"));
      co_return;
    }
    auto found = co_await contexts_.Default(*language);
    if (!found) {
      co_await ex.Respond(Text(500, "Failed to create " + name + " context: " + found.error().message()));
      co_return;
    }
    context = std::move(*found);
  }
  auto global = co_await GlobalEnv(std::string(ex.request().Header("X-Access-Token")));
  if (!global) {
    unsigned status = global.error().code() == Errc::kPermissionDenied ? 401 : 502;
    co_await ex.Respond(Text(status, global.error().message()));
    co_return;
  }

  auto run = std::make_shared<Run>(executor_);
  run->context = std::move(context);
  run->code = j["code"].get<std::string>();
  run->env_vars = std::move(*env_vars);
  run->global_env = std::move(*global);
  run->max_pending = options_.max_pending_bytes;

  http::Fields headers;
  headers.set(boost::beast::http::field::content_type, "application/x-ndjson");
  if (auto st = co_await ex.StartStream(200, std::move(headers)); !st) co_return;
  asio::co_spawn(executor_, Execute(run), asio::detached);

  // Writes what the execution produces; a keepalive after a quiet interval. A client that
  // left is noticed within a second (a peek at its socket), so its execution is interrupted.
  auto last_write = Clock::now();
  for (;;) {
    if (ex.ClientGone()) {
      run->ClientGone();
      ex.set_keep_alive(false);
      co_return;
    }
    if (!run->lines.empty()) {
      std::string batch;
      while (!run->lines.empty() && batch.size() < (256u << 10)) {
        batch += run->lines.front();
        run->pending_bytes -= run->lines.front().size();
        run->lines.pop_front();
      }
      if (auto st = co_await ex.WriteStream(batch); !st) {
        run->ClientGone();
        ex.set_keep_alive(false);
        co_return;
      }
      last_write = Clock::now();
      continue;
    }
    if (run->done) break;
    if (run->held) {
      // Partial line: out once it has waited long enough (a progress bar without newlines).
      auto due = run->held_since + Run::kHoldPartial;
      if (Clock::now() >= due) {
        run->FlushHeld();
        continue;
      }
      run->wake.expires_at(due);
    } else {
      run->wake.expires_at(std::min(last_write + options_.keepalive_interval,
                                    Clock::now() + kClientCheck));
    }
    boost::system::error_code ec;
    co_await run->wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && run->lines.empty() && !run->held && !run->done &&
        Clock::now() >= last_write + options_.keepalive_interval) {
      run->Append(KeepaliveLine());
    }
  }
  (void)co_await ex.FinishStream();
}

http::Task<void> InterpServer::Execute(std::shared_ptr<Run> run) {
  Context& context = *run->context;
  co_await context.mutex.Lock();
  co_await ExecuteLocked(run);
  run->Finish();
  context.mutex.Unlock();
}

http::Task<void> InterpServer::ExecuteLocked(std::shared_ptr<Run> run) {
  Context& context = *run->context;
  if (run->client_gone) co_return;  // left while waiting for its turn: nothing to run for
  if (context.removed) {
    run->Push(ErrorLine("ContextNotFound", "the context was removed", ""));
    run->Push(EndLine());
    co_return;
  }
  if (!context.kernel || !context.kernel->alive()) {
    // (After a failed restart, or a kernel that died between cells.)
    if (auto st = co_await contexts_.Revive(context); !st) {
      run->Push(ErrorLine("KernelStartError", st.error().message(), ""));
      run->Push(EndLine());
      co_return;
    }
  }
  std::shared_ptr<Kernel> kernel = context.kernel;
  // First: a reseed may replace the kernel's node process (javascript), which loses its state.
  co_await ReseedIfRestored(context);
  if (!context.global_env_applied) {
    if (!run->global_env.empty()) {
      auto set = co_await RunSilent(*kernel, EnvCode(context.language, Changes(run->global_env)));
      if (!set) KILN_LOG(Warn, "global env not applied", {"error", set.error().message()});
    }
    context.global_env_applied = true;
  }
  if (!run->env_vars.empty()) {
    auto set = co_await RunSilent(*kernel, EnvCode(context.language, Changes(run->env_vars)));
    if (!set) KILN_LOG(Warn, "env vars not applied", {"error", set.error().message()});
  }
  run->executing = kernel;
  context.user_code_ran = true;
  std::weak_ptr<Run> weak = run;
  OutputFn on_output = [weak](const Message& message) {
    auto r = weak.lock();
    if (!r || r->client_gone) return;
    if (auto line = OutputLine(message, StreamTimestamp())) r->Push(*line);
  };
  auto reply = co_await kernel->Execute(run->code, CellOptions(), std::move(on_output));
  run->executing.reset();
  if (!reply) {
    // The kernel died (crash, os._exit, out of memory) or the context was restarted.
    std::string why = kernel->exit_description();
    if (context.removed) {
      run->Push(ErrorLine("ContextNotFound", "the context was removed during the execution", ""));
    } else if (context.restarting || context.kernel != kernel) {
      run->Push(ErrorLine("ContextRestarting", "the context was restarted during the execution", ""));
    } else {
      run->Push(ErrorLine("KernelDied",
                          "the kernel process ended (" + (why.empty() ? reply.error().message() : why) +
                              "); it is restarted, its state is lost",
                          ""));
      context.kernel.reset();
    }
    run->Push(EndLine());
    if (!context.removed && !context.restarting && !context.kernel) {
      if (auto st = co_await contexts_.Revive(context); !st) {
        KILN_LOG(Warn, "kernel restart failed", {"context", context.id}, {"error", st.error().message()});
      }
    }
    co_return;
  }
  if (reply->status == "aborted") {
    run->Push(ErrorLine("ExecutionAborted", "the kernel aborted the execution", ""));
  } else if (reply->status == "error" && !run->saw_error) {
    // A kernel may report the error only in the reply.
    std::string traceback;
    if (auto it = reply->content.find("traceback"); it != reply->content.end() && it->is_array()) {
      for (const json& frame : *it) {
        if (!frame.is_string()) continue;
        if (!traceback.empty()) traceback += '\n';
        traceback += frame.get<std::string>();
      }
    }
    run->Push(ErrorLine(Str(reply->content, "ename", "Error"), Str(reply->content, "evalue"),
                        traceback));
  }
  run->Push(EndLine());
  // The client has everything; undo the per-call variables before the next execution.
  run->Finish();
  if (!run->env_vars.empty() && kernel->alive()) {
    auto revert = co_await RunSilent(*kernel, 
        EnvCode(context.language, Reverts(run->env_vars, run->global_env)));
    if (!revert) KILN_LOG(Warn, "env vars not reverted", {"error", revert.error().message()});
  }
}

}  // namespace kiln::interp
