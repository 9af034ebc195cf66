#include "kilnd/orchestrator/manager.h"

#include <sys/random.h>
#include <sys/statvfs.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "base/log.h"
#include "http/client.h"
#include "http/connect.h"
#include "kilnd/orchestrator/ids.h"
#include "kilnd/orchestrator/offload.h"
#include "wire/process.h"

namespace kiln::kilnd {
namespace asio = boost::asio;
using json = nlohmann::json;
using std::chrono::milliseconds;

namespace {

constexpr size_t kMaxSamples = 1800;

int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t HostMemAvailable() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t value = 0;
  std::string unit;
  while (in >> key >> value >> unit) {
    if (key == "MemAvailable:") return value * 1024;
  }
  return UINT64_MAX;
}

// The agent's configuration; an empty `token` leaves the agent without one. With the host's
// wall clock and fresh randomness for the sandbox's kernel: sandboxes restored from one memory
// snapshot (vm runtime) wake with the snapshot's time and would share RNG state.
std::string InitBody(const std::map<std::string, std::string>& env, const std::string& token,
                     const std::string& user, const std::string& workdir) {
  json j = json::object();
  json e = json::object();
  for (const auto& [k, v] : env) e[k] = v;
  j["envVars"] = e;
  if (!token.empty()) j["accessToken"] = token;
  j["defaultUser"] = user;
  j["defaultWorkdir"] = workdir;
  int64_t now = NowMs();
  j["timestamp"] = FormatRfc3339(now / 1000, (now % 1000) * 1000000);
  char seed[64];
  if (getrandom(seed, sizeof seed, 0) == static_cast<ssize_t>(sizeof seed)) {
    j["entropy"] = Base64Encode(std::string_view(seed, sizeof seed));
  }
  explicit_bzero(seed, sizeof seed);
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

// One sandbox that is alive (running or transitioning) or paused.
struct SandboxManager::Sandbox {
  SandboxRow row;
  TemplateSpec tmpl;
  std::shared_ptr<Instance> instance;  // null when paused without memory (after a restart)
  std::unique_ptr<DnsRelay> dns;       // answers the sandbox's DNS while it lives
  std::unique_ptr<asio::steady_timer> timer;
  bool transitioning = false;  // pausing or resuming
  std::deque<MetricSample> samples;
  uint64_t last_cpu_ns = 0;
  int64_t last_sample_ms = 0;
};

SandboxManager::SandboxManager(asio::io_context& io, Store& store, Runtime& runtime,
                               TemplateResolver templates, ManagerOptions options)
    : io_(io),
      store_(store),
      runtime_(runtime),
      templates_(std::move(templates)),
      options_(std::move(options)),
      workers_(static_cast<size_t>(std::max(1, options_.worker_threads))),
      sample_timer_(io) {}

SandboxManager::~SandboxManager() {
  stopping_ = true;
  sample_timer_.cancel();
  workers_.join();
}

int64_t SandboxManager::ClampTimeout(std::optional<int64_t> t) const {
  int64_t v = t.value_or(options_.default_timeout_s);
  if (v < 0) v = 0;
  return std::min(v, options_.max_timeout_s);
}

Status SandboxManager::Persist(const Sandbox& sb) { return store_.PutSandbox(sb.row); }

Status SandboxManager::Start() {
  std::error_code ec;
  std::filesystem::create_directories(options_.data_dir / "snapshots", ec);
  if (ec) return Fail(Errc::kUnavailable, "create " + (options_.data_dir / "snapshots").string() + ": " + ec.message());
  KILN_ASSIGN_OR_RETURN(std::vector<SandboxRow> rows, store_.ListSandboxes({"creating", "running", "paused"}));
  for (SandboxRow& row : rows) {
    if (row.state == "paused" && !row.snapshot_dir.empty() &&
        std::filesystem::is_directory(row.snapshot_dir, ec)) {
      auto sb = std::make_unique<Sandbox>();
      auto tmpl = templates_(row.template_id);
      if (tmpl) sb->tmpl = *tmpl;
      sb->row = std::move(row);
      sb->tmpl.name = sb->row.template_id;
      KILN_LOG(Info, "paused sandbox kept across restart", {"sandbox", sb->row.id});
      sandboxes_.emplace(sb->row.id, std::move(sb));
      continue;
    }
    // Its processes did not survive the previous kilnd: say so in the store.
    row.end_reason = row.state == "paused" ? "snapshot missing after kilnd restart"
                                           : "kilnd restarted";
    row.state = "killed";
    row.ended_at_ms = NowMs();
    KILN_TRY(store_.PutSandbox(row));
    KILN_LOG(Info, "sandbox lost in restart", {"sandbox", row.id}, {"reason", row.end_reason});
  }
  for (const auto& [t, size] : options_.pool_sizes) MaybeRefill(t);
  asio::co_spawn(io_, SampleLoop(), asio::detached);
  return {};
}

http::Task<void> SandboxManager::Shutdown() {
  stopping_ = true;
  sample_timer_.cancel();
  std::vector<std::shared_ptr<Instance>> doomed;
  for (auto& [tid, entries] : pool_) {
    for (auto& e : entries) doomed.push_back(std::move(e.instance));
  }
  pool_.clear();
  for (auto it = sandboxes_.begin(); it != sandboxes_.end();) {
    Sandbox& sb = *it->second;
    if (sb.timer) sb.timer->cancel();
    if (sb.row.state == "paused") {
      // The files are on disk; the frozen processes end with kilnd.
      if (sb.instance) doomed.push_back(std::move(sb.instance));
      ++it;
      continue;
    }
    sb.row.state = "killed";
    sb.row.end_reason = "kilnd stopped";
    sb.row.ended_at_ms = NowMs();
    (void)Persist(sb);
    if (sb.instance) doomed.push_back(std::move(sb.instance));
    it = sandboxes_.erase(it);
  }
  for (auto& inst : doomed) {
    if (inst) co_await Destroy(std::move(inst));
  }
}

http::Task<void> SandboxManager::Destroy(std::shared_ptr<Instance> instance) {
  // The last reference may be held by a proxied connection; Kill() stops the processes now.
  auto kill = [instance]() {
    if (auto st = instance->Kill(); !st) {
      KILN_LOG(Warn, "kill sandbox", {"sandbox", instance->id()}, {"error", st.error().message()});
    }
    return 0;
  };
  co_await Offload(workers_, std::move(kill));
}

void SandboxManager::WatchExit(const std::string& id, const std::shared_ptr<Instance>& instance) {
  auto fd = instance->ExitFd();
  if (!fd) return;  // the runtime cannot tell; a dead agent then shows as 502s until the timeout
  auto watch = std::make_shared<asio::posix::stream_descriptor>(io_, fd->release());
  std::weak_ptr<Instance> weak = instance;
  watch->async_wait(asio::posix::stream_descriptor::wait_read,
                    [this, watch, id, weak](const boost::system::error_code& ec) {
                      if (ec || stopping_) return;
                      if (auto inst = weak.lock()) OnInstanceExit(id, inst.get());
                    });
}

void SandboxManager::OnInstanceExit(const std::string& id, const Instance* instance) {
  for (auto& [tid, entries] : pool_) {
    for (auto it = entries.begin(); it != entries.end(); ++it) {
      if (it->instance.get() == instance) {
        KILN_LOG(Warn, "pooled sandbox died", {"sandbox", id});
        std::shared_ptr<Instance> dead = std::move(it->instance);
        entries.erase(it);
        asio::co_spawn(io_, Destroy(std::move(dead)), asio::detached);
        MaybeRefill(tid);
        return;
      }
    }
  }
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end() || it->second->instance.get() != instance) return;
  KILN_LOG(Warn, "sandbox init exited; retiring the sandbox", {"sandbox", id});
  it->second->row.end_reason = "sandbox init exited (killed or crashed)";
  asio::co_spawn(io_, Kill(id), asio::detached);
}

http::Task<Status> SandboxManager::WaitAgentReady(Instance& instance) {
  auto st = co_await WaitHttpReady(instance, options_.agent_port, "/health",
                                   options_.agent_ready_timeout);
  if (!st) co_return Unexpected(Error(st.error().code(), "agent did not become ready: " + st.error().message()));
  co_return Status();
}

http::Task<Status> SandboxManager::WaitHttpReady(Instance& instance, uint16_t port,
                                                 std::string path,
                                                 std::chrono::milliseconds timeout) {
  auto executor = co_await asio::this_coro::executor;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  asio::steady_timer backoff(executor);
  milliseconds delay(1);
  std::string last_error = "no answer";
  while (std::chrono::steady_clock::now() < deadline && !stopping_) {
    auto fd = instance.OpenSocket();
    if (!fd) co_return Unexpected(std::move(fd).error().Wrap("socket in the sandbox"));
    const std::string address(instance.address());
    auto conn = co_await http::ClientConnection::ConnectFd(std::move(*fd), address, port,
                                                           milliseconds(1000));
    if (conn) {
      http::ClientRequest req;
      req.target = path;
      auto res = co_await conn->Send(std::move(req), milliseconds(2000));
      if (res && res->status / 100 == 2) co_return Status();
      last_error = res ? path + " answered " + std::to_string(res->status) : res.error().message();
    } else {
      last_error = conn.error().message();
    }
    // Still starting (connection refused, or not ready yet): try again shortly.
    backoff.expires_after(delay);
    boost::system::error_code ec;
    co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    delay = std::min(delay * 2, milliseconds(50));
  }
  co_return Unexpected(Error(Errc::kTimeout, "port " + std::to_string(port) + ": " + last_error));
}

http::Task<void> SandboxManager::WarmUp(Instance& instance, std::string user) {
  // One throwaway command the way the SDK runs commands (a login bash as the template's user),
  // so the sandbox's first real one does not pay for the agent's, the new mount namespace's or
  // (vm under TCG) the code translation's first-time costs: the user's profile scripts and
  // the identity switch are part of them. Best effort: failures only cost that time.
  auto fd = instance.OpenSocket();
  if (!fd) co_return;
  const std::string address(instance.address());
  auto conn = co_await http::ClientConnection::ConnectFd(std::move(*fd), address,
                                                         options_.agent_port, milliseconds(2000));
  if (!conn) co_return;
  http::ClientRequest req;
  req.method = http::Verb::post;
  req.target = "/process.Process/Start";
  req.content_type = "application/connect+json";
  req.headers.set(boost::beast::http::field::authorization, "Basic " + Base64Encode(user + ":"));
  req.body = http::connect::EncodeEnvelope(
      0, R"({"process":{"cmd":"/bin/bash","args":["-l","-c","true"]},"stdin":false})");
  (void)co_await conn->Send(std::move(req), milliseconds(10000));
}

http::Task<void> SandboxManager::CollectServiceOutput(std::shared_ptr<http::ClientConnection> conn,
                                                      std::shared_ptr<std::string> raw) {
  // Until the service is ready (then the connection is closed) or ends; the start-up output
  // is what explains a failure, so only the first 256 KiB are kept.
  for (;;) {
    auto piece = co_await conn->ReadSome(65536, std::chrono::hours(24));
    if (!piece || piece->empty()) co_return;
    if (raw->size() < (256u << 10)) raw->append(*piece);
  }
}

http::Task<Status> SandboxManager::StartService(Instance& instance, const TemplateSpec& tmpl) {
  // Through the agent's process.Process/Start as root; the stream is dropped once the service
  // is ready (the agent keeps the process running).
  auto fd = instance.OpenSocket();
  if (!fd) co_return Unexpected(std::move(fd).error().Wrap("agent socket"));
  const std::string address(instance.address());
  KILN_CO_ASSIGN_OR_RETURN(
      auto connected, co_await http::ClientConnection::ConnectFd(std::move(*fd), address,
                                                                 options_.agent_port, milliseconds(2000)));
  auto conn = std::make_shared<http::ClientConnection>(std::move(connected));
  http::ClientRequest req;
  req.method = http::Verb::post;
  req.target = "/process.Process/Start";
  req.content_type = "application/connect+json";
  req.headers.set(boost::beast::http::field::authorization, "Basic cm9vdDo=");  // root:
  req.body = http::connect::EncodeEnvelope(0, wire::ServiceStartBody(tmpl.start_cmd));
  KILN_CO_ASSIGN_OR_RETURN(auto head, co_await conn->SendForStream(std::move(req), milliseconds(5000)));
  if (head.status != 200) {
    co_return Unexpected(Error(Errc::kInternal, "agent refused to start " + tmpl.start_cmd[0] +
                                                    ": HTTP " + std::to_string(head.status)));
  }
  auto raw = std::make_shared<std::string>();
  asio::co_spawn(io_, CollectServiceOutput(conn, raw), asio::detached);
  auto ready = co_await WaitHttpReady(instance, tmpl.ready_port, tmpl.ready_path,
                                      options_.service_ready_timeout);
  boost::system::error_code ignored;
  conn->stream().socket().close(ignored);
  if (!ready) {
    std::string output = wire::ProcessStreamText(*raw);
    co_return Unexpected(Error(ready.error().code(),
                               tmpl.start_cmd[0] + " not ready (" + ready.error().message() + ")" +
                                   (output.empty() ? "" : "; its output: " + output)));
  }
  co_return Status();
}

http::Task<Status> SandboxManager::InitAgent(Instance& instance, const Sandbox& sb,
                                             const TemplateSpec& tmpl) {
  std::map<std::string, std::string> env = tmpl.env;
  for (const auto& [k, v] : sb.row.env_vars) env[k] = v;
  // An agent that kept its state (a sandbox resumed with its memory) only takes a new /init
  // from the holder of its token.
  co_return co_await PostInit(instance,
                              InitBody(env, sb.row.envd_token, tmpl.default_user, tmpl.workdir),
                              sb.row.envd_token);
}

http::Task<Status> SandboxManager::PostInit(Instance& instance, std::string body,
                                            std::string token) {
  auto fd = instance.OpenSocket();
  if (!fd) co_return Unexpected(std::move(fd).error().Wrap("agent socket"));
  const std::string address(instance.address());
  KILN_CO_ASSIGN_OR_RETURN(
      auto conn, co_await http::ClientConnection::ConnectFd(std::move(*fd), address,
                                                            options_.agent_port, milliseconds(2000)));
  http::ClientRequest req;
  req.method = http::Verb::post;
  req.target = "/init";
  req.body = std::move(body);
  if (!token.empty()) req.headers.set("X-Access-Token", token);
  KILN_CO_ASSIGN_OR_RETURN(auto res, co_await conn.Send(std::move(req), milliseconds(5000)));
  if (res.status / 100 != 2) {
    co_return Unexpected(Error(Errc::kInternal, "agent /init answered " +
                                                    std::to_string(res.status) + ": " + res.body));
  }
  co_return Status();
}

Result<Runtime*> SandboxManager::RuntimeFor(const TemplateSpec& tmpl,
                                            const std::map<std::string, std::string>& metadata) const {
  std::string name = tmpl.runtime;
  if (auto it = metadata.find(kRuntimeMetadataKey); it != metadata.end()) name = it->second;
  if (name.empty() || name == runtime_.name()) return &runtime_;
  if (auto it = options_.runtimes.find(name); it != options_.runtimes.end() && it->second) {
    return it->second;
  }
  std::string known(runtime_.name());
  for (const auto& [n, r] : options_.runtimes) {
    if (r && n != runtime_.name()) known += ", " + n;
  }
  return Fail(Errc::kInvalidArgument, "unknown runtime \"" + name + "\" (this kilnd runs: " + known + ")");
}

Result<Runtime*> SandboxManager::RuntimeFor(const TemplateSpec& tmpl) const {
  static const std::map<std::string, std::string> kNoMetadata;
  return RuntimeFor(tmpl, kNoMetadata);
}

http::Task<Result<std::shared_ptr<Instance>>> SandboxManager::StartInstance(
    const std::string& id, const TemplateSpec& tmpl, Runtime* runtime,
    std::optional<std::filesystem::path> files_from, bool allow_internet) {
  InstanceSpec spec;
  spec.id = id;
  spec.rootfs = tmpl.rootfs;
  spec.envd_binary = options_.envd_binary;
  spec.interp_binary = options_.interp_binary;
  spec.files_from = std::move(files_from);
  spec.limits = options_.limits;
  spec.egress.internet = allow_internet;
  if (options_.dns && options_.dns->enabled()) spec.resolv_conf = std::string(kSandboxResolvConf);
  if (!tmpl.start_cmd.empty()) {
    spec.service = InstanceSpec::Service{tmpl.start_cmd, tmpl.ready_port, tmpl.ready_path};
  }
  // A sandbox restored with its processes still runs its service; some runtimes start it.
  bool start_service = !tmpl.start_cmd.empty() && !runtime->starts_services() &&
                       !(spec.files_from && runtime->snapshots_keep_processes());
  auto create = [runtime, spec]() -> Result<std::shared_ptr<Instance>> {
    auto inst = runtime->Create(spec);
    if (!inst) return Unexpected(std::move(inst).error());
    return std::shared_ptr<Instance>(std::move(*inst));
  };
  auto created = co_await Offload(workers_, std::move(create));
  if (!created) {
    // A setup failure is the server's problem, whatever errno the kernel gave (EACCES would
    // otherwise read as the client's 403).
    Errc code = created.error().code() == Errc::kResourceExhausted ? Errc::kResourceExhausted
                                                                   : Errc::kInternal;
    co_return Unexpected(Error(code, "create sandbox: " + created.error().message()));
  }
  std::shared_ptr<Instance> instance = std::move(*created);
  if (auto st = co_await WaitAgentReady(*instance); !st) {
    co_await Destroy(instance);
    co_return Unexpected(std::move(st).error());
  }
  if (!spec.files_from) {
    // The template's configuration first: the clock and the RNG (a VM restored from a snapshot
    // wakes with the snapshot's time), its env vars, user and workdir. So the warm-up runs
    // what the sandbox's first command will run (LANG loads a locale, for one), and the
    // claim's /init moves no clock (vm under TCG: the create call ~20 -> ~10 ms). No token
    // yet; the claim sets it, adds the sandbox's env vars and reseeds the RNG again.
    if (auto st = co_await PostInit(*instance,
                                    InitBody(tmpl.env, "", tmpl.default_user, tmpl.workdir), "");
        !st) {
      co_await Destroy(instance);
      co_return Unexpected(std::move(st).error().Wrap("configure agent"));
    }
  }
  co_await WarmUp(*instance, tmpl.default_user);
  if (start_service) {
    if (auto st = co_await StartService(*instance, tmpl); !st) {
      co_await Destroy(instance);
      co_return Unexpected(std::move(st).error());
    }
  }
  co_return instance;
}

size_t SandboxManager::PoolTarget(const std::string& template_id) const {
  auto it = options_.pool_sizes.find(template_id);
  return it == options_.pool_sizes.end() ? 0 : static_cast<size_t>(std::max(0, it->second));
}

size_t SandboxManager::pool_ready(const std::string& template_id) const {
  auto it = pool_.find(template_id);
  return it == pool_.end() ? 0 : it->second.size();
}

std::map<std::string, std::pair<size_t, size_t>> SandboxManager::PoolStatus() const {
  std::map<std::string, std::pair<size_t, size_t>> out;
  for (const auto& [t, size] : options_.pool_sizes) {
    out[t] = {pool_ready(t), static_cast<size_t>(std::max(0, size))};
  }
  return out;
}

void SandboxManager::MaybeRefill(const std::string& template_id) {
  if (stopping_ || PoolTarget(template_id) == 0 || refilling_[template_id]) return;
  refilling_[template_id] = true;
  asio::co_spawn(io_, RefillPool(template_id), asio::detached);
}

http::Task<void> SandboxManager::RefillPool(std::string template_id) {
  // One sandbox at a time, so the refill never takes more than one worker; it pauses while
  // the host is short of memory and gives up after repeated failures (the next claim retries).
  int failures = 0;
  while (!stopping_ && pool_ready(template_id) < PoolTarget(template_id) &&
         failures < 3) {
    if (HostMemAvailable() < options_.pool_min_available_bytes) {
      KILN_LOG(Warn, "pool refill paused: host memory low", {"template", template_id});
      break;
    }
    auto tmpl = templates_(template_id);
    if (!tmpl) {
      KILN_LOG(Warn, "pool refill: template unavailable", {"template", template_id},
               {"error", tmpl.error().message()});
      break;
    }
    auto runtime = RuntimeFor(*tmpl);
    if (!runtime) {
      KILN_LOG(Warn, "pool refill: no runtime", {"template", template_id},
               {"error", runtime.error().message()});
      break;
    }
    std::string id = NewSandboxId();
    auto inst = co_await StartInstance(id, *tmpl, *runtime, std::nullopt, true);
    if (!inst) {
      ++failures;
      KILN_LOG(Warn, "pool refill failed", {"template", template_id},
               {"error", inst.error().message()});
      continue;
    }
    if (stopping_) {
      co_await Destroy(std::move(*inst));
      break;
    }
    WatchExit(id, *inst);
    pool_[template_id].push_back(PoolEntry{id, std::move(*inst)});
  }
  refilling_[template_id] = false;
}

http::Task<Result<SandboxRow>> SandboxManager::Create(CreateParams params) {
  if (stopping_) co_return Unexpected(Error(Errc::kUnavailable, "kilnd is shutting down"));
  KILN_CO_ASSIGN_OR_RETURN(TemplateSpec tmpl, templates_(params.template_id));
  auto sb = std::make_unique<Sandbox>();
  sb->tmpl = tmpl;
  SandboxRow& row = sb->row;
  row.template_id = tmpl.name;  // an alias ("code-interpreter") resolves to the name
  row.state = "creating";
  row.metadata = std::move(params.metadata);
  row.env_vars = std::move(params.env_vars);
  row.envd_token = NewToken();
  row.allow_internet = params.allow_internet;
  row.auto_pause = params.auto_pause;
  row.auto_resume = params.auto_resume;
  row.cpu_count = std::max<uint32_t>(1, options_.limits.cpu_millis / 1000);
  row.memory_mb = static_cast<uint32_t>(options_.limits.memory_bytes >> 20);
  row.disk_mb = static_cast<uint32_t>(options_.limits.disk_bytes >> 20);

  KILN_CO_ASSIGN_OR_RETURN(Runtime * runtime, RuntimeFor(tmpl, row.metadata));
  KILN_CO_ASSIGN_OR_RETURN(Runtime * pooled_runtime, RuntimeFor(tmpl));
  std::shared_ptr<Instance> instance;
  auto& entries = pool_[tmpl.name];
  if (!entries.empty() && runtime == pooled_runtime) {
    PoolEntry e = std::move(entries.front());
    entries.pop_front();
    row.id = e.id;
    instance = std::move(e.instance);
    MaybeRefill(tmpl.name);
    if (!params.allow_internet) {
      if (auto st = instance->SetEgress(EgressPolicy{false}); !st) {
        co_await Destroy(instance);
        co_return Unexpected(std::move(st).error().Wrap("sandbox egress"));
      }
    }
  } else {
    MaybeRefill(tmpl.name);
    row.id = NewSandboxId();
    auto started = co_await StartInstance(row.id, tmpl, runtime, std::nullopt, params.allow_internet);
    if (!started) co_return Unexpected(std::move(started).error());
    instance = std::move(*started);
    WatchExit(row.id, instance);
  }
  if (auto st = co_await InitAgent(*instance, *sb, tmpl); !st) {
    co_await Destroy(instance);
    co_return Unexpected(std::move(st).error().Wrap("configure agent"));
  }
  if (stopping_) {
    co_await Destroy(instance);
    co_return Unexpected(Error(Errc::kUnavailable, "kilnd is shutting down"));
  }
  StartDns(*sb, *instance);
  // Start times are unique and increasing, so "newest first" is a total order for listing.
  int64_t now = std::max(NowMs(), last_started_ms_ + 1);
  last_started_ms_ = now;
  row.state = "running";
  row.started_at_ms = now;
  row.end_at_ms = now + ClampTimeout(params.timeout_s) * 1000;
  sb->instance = std::move(instance);
  if (auto st = Persist(*sb); !st) {
    co_await Destroy(std::move(sb->instance));
    co_return Unexpected(std::move(st).error().Wrap("store sandbox"));
  }
  Sandbox& ref = *sb;
  sandboxes_.emplace(row.id, std::move(sb));
  ArmTimer(ref);
  Sample(ref);
  KILN_LOG(Info, "sandbox created", {"sandbox", ref.row.id}, {"template", ref.row.template_id});
  co_return ref.row;
}

void SandboxManager::StartDns(Sandbox& sb, Instance& instance) {
  if (!options_.dns || !options_.dns->enabled() || !sb.row.allow_internet) return;
  auto relay = options_.dns->Serve(instance);
  if (!relay) {
    KILN_LOG(Warn, "no DNS for sandbox", {"sandbox", sb.row.id}, {"error", relay.error().message()});
    return;
  }
  sb.dns = std::move(*relay);
}

void SandboxManager::ArmTimer(Sandbox& sb) {
  if (!sb.timer) sb.timer = std::make_unique<asio::steady_timer>(io_);
  int64_t left = sb.row.end_at_ms - NowMs();
  sb.timer->expires_after(milliseconds(std::max<int64_t>(0, left)));
  std::string id = sb.row.id;
  sb.timer->async_wait([this, id](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled or re-armed
    asio::co_spawn(io_, OnTimeout(id), asio::detached);
  });
}

http::Task<void> SandboxManager::OnTimeout(std::string id) {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) co_return;
  Sandbox& sb = *it->second;
  if (sb.row.state != "running" || sb.transitioning) co_return;
  if (sb.row.end_at_ms > NowMs() + 5) {
    ArmTimer(sb);  // extended meanwhile
    co_return;
  }
  if (sb.row.auto_pause) {
    auto st = co_await Pause(id);
    if (st) co_return;
    KILN_LOG(Warn, "auto-pause failed, killing", {"sandbox", id}, {"error", st.error().message()});
  }
  it = sandboxes_.find(id);
  if (it == sandboxes_.end()) co_return;
  it->second->row.end_reason = "timeout";
  (void)co_await Kill(id);
}

Result<SandboxRow> SandboxManager::Get(const std::string& id) const {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return Fail(Errc::kNotFound, "sandbox \"" + id + "\" not found");
  return it->second->row;
}

Result<SandboxRow> SandboxManager::Record(const std::string& id) const {
  if (auto live = Get(id)) return live;
  KILN_ASSIGN_OR_RETURN(std::optional<SandboxRow> row, store_.GetSandbox(id));
  if (!row) return Fail(Errc::kNotFound, "sandbox \"" + id + "\" was never created here");
  return *row;
}

std::vector<SandboxRow> SandboxManager::List() const {
  std::vector<SandboxRow> out;
  for (const auto& [id, sb] : sandboxes_) {
    if (sb->row.state == "running" || sb->row.state == "paused") out.push_back(sb->row);
  }
  return out;
}

http::Task<Result<bool>> SandboxManager::Kill(std::string id) {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) co_return false;
  std::unique_ptr<Sandbox> sb = std::move(it->second);
  sandboxes_.erase(it);
  if (sb->timer) sb->timer->cancel();
  if (sb->row.end_reason.empty()) sb->row.end_reason = "killed";
  sb->row.state = "killed";
  sb->row.ended_at_ms = NowMs();
  std::string snapshot = sb->row.snapshot_dir;
  sb->row.snapshot_dir.clear();
  if (auto st = Persist(*sb); !st) {
    KILN_LOG(Error, "store killed sandbox", {"sandbox", id}, {"error", st.error().message()});
  }
  if (sb->instance) co_await Destroy(std::move(sb->instance));
  if (!snapshot.empty()) {
    auto remove = [snapshot]() {
      std::error_code ec;
      std::filesystem::remove_all(snapshot, ec);
      return 0;
    };
    co_await Offload(workers_, std::move(remove));
  }
  KILN_LOG(Info, "sandbox killed", {"sandbox", id}, {"reason", sb->row.end_reason});
  co_return true;
}

Status SandboxManager::SetTimeout(const std::string& id, int64_t timeout_s) {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return Fail(Errc::kNotFound, "sandbox \"" + id + "\" not found");
  Sandbox& sb = *it->second;
  sb.row.end_at_ms = NowMs() + ClampTimeout(timeout_s) * 1000;
  KILN_TRY(Persist(sb));
  if (sb.row.state == "running" && !sb.transitioning) ArmTimer(sb);
  return {};
}

http::Task<Status> SandboxManager::Pause(std::string id) {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) co_return Unexpected(Error(Errc::kNotFound, "sandbox \"" + id + "\" not found"));
  Sandbox* sb = it->second.get();
  if (sb->transitioning) co_return Unexpected(Error(Errc::kUnavailable, "sandbox is pausing or resuming"));
  if (sb->row.state == "paused") co_return Unexpected(Error(Errc::kFailedPrecondition, "sandbox is already paused"));
  sb->transitioning = true;
  if (sb->timer) sb->timer->cancel();
  std::shared_ptr<Instance> instance = sb->instance;
  std::filesystem::path dest = options_.data_dir / "snapshots" / id;
  auto pause = [instance, dest]() -> Status {
    KILN_TRY(instance->Freeze());
    std::error_code ec;
    std::filesystem::remove_all(dest, ec);
    if (auto s = instance->SnapshotFiles(dest); !s) {
      (void)instance->Thaw();
      return s;
    }
    return {};
  };
  auto st = co_await Offload(workers_, std::move(pause));
  it = sandboxes_.find(id);
  if (it == sandboxes_.end()) co_return Unexpected(Error(Errc::kNotFound, "sandbox was killed while pausing"));
  sb = it->second.get();
  if (!st) {
    sb->transitioning = false;
    ArmTimer(*sb);
    co_return Unexpected(std::move(st).error().Wrap("pause"));
  }
  sb->row.state = "paused";
  sb->row.snapshot_dir = dest.string();
  // The whole sandbox is on disk: stop it (still transitioning, so a resume waits until it is
  // gone); resume restores it from the snapshot.
  if (auto runtime = RuntimeFor(sb->tmpl, sb->row.metadata);
      runtime && (*runtime)->snapshots_keep_processes() && sb->instance) {
    sb->dns.reset();
    std::shared_ptr<Instance> stopped = std::move(sb->instance);
    co_await Destroy(std::move(stopped));
    it = sandboxes_.find(id);
    if (it == sandboxes_.end()) co_return Unexpected(Error(Errc::kNotFound, "sandbox was killed while pausing"));
    sb = it->second.get();
  }
  sb->transitioning = false;
  KILN_CO_TRY(Persist(*sb));
  KILN_LOG(Info, "sandbox paused", {"sandbox", id});
  co_return Status();
}

http::Task<Result<std::pair<SandboxRow, bool>>> SandboxManager::Connect(std::string id,
                                                                        int64_t timeout_s) {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) co_return Unexpected(Error(Errc::kNotFound, "sandbox \"" + id + "\" not found"));
  Sandbox* sb = it->second.get();
  // A pause or resume under way: wait for its end. A pausing sandbox reads "paused" as soon as
  // it is saved, while its stopped VM is still being taken down; a connect then must not fail.
  if (sb->transitioning) {
    asio::steady_timer wait(io_);
    for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);;) {
      if (std::chrono::steady_clock::now() >= deadline) {
        co_return Unexpected(Error(Errc::kUnavailable, "sandbox is pausing or resuming"));
      }
      wait.expires_after(milliseconds(10));
      boost::system::error_code ec;
      co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      it = sandboxes_.find(id);
      if (it == sandboxes_.end()) co_return Unexpected(Error(Errc::kNotFound, "sandbox \"" + id + "\" not found"));
      sb = it->second.get();
      if (!sb->transitioning) break;
    }
  }
  int64_t want_end = NowMs() + ClampTimeout(timeout_s) * 1000;
  if (sb->row.state == "running") {
    if (want_end > sb->row.end_at_ms) {
      sb->row.end_at_ms = want_end;
      KILN_CO_TRY(Persist(*sb));
      ArmTimer(*sb);
    }
    co_return std::make_pair(sb->row, false);
  }
  // Paused: thaw the frozen processes, or boot a new sandbox on the saved files.
  sb->transitioning = true;
  std::shared_ptr<Instance> instance = sb->instance;
  Status st;
  if (instance) {
    auto thaw = [instance]() { return instance->Thaw(); };
    st = co_await Offload(workers_, std::move(thaw));
  } else {
    TemplateSpec tmpl = sb->tmpl;
    auto resolved = templates_(sb->row.template_id);
    if (resolved) tmpl = *resolved;
    auto runtime = RuntimeFor(tmpl, sb->row.metadata);
    Result<std::shared_ptr<Instance>> started = Unexpected(Error(Errc::kInternal, "no runtime"));
    if (!runtime) {
      started = Unexpected(std::move(runtime).error());
    } else {
      started = co_await StartInstance(id, tmpl, *runtime,
                                       std::filesystem::path(sb->row.snapshot_dir),
                                       sb->row.allow_internet);
    }
    if (!started) {
      st = Unexpected(std::move(started).error());
    } else {
      instance = std::move(*started);
      it = sandboxes_.find(id);
      if (it == sandboxes_.end()) {
        co_await Destroy(instance);
        co_return Unexpected(Error(Errc::kNotFound, "sandbox was killed while resuming"));
      }
      st = co_await InitAgent(*instance, *it->second, tmpl);
      if (!st) {
        co_await Destroy(instance);
      } else {
        WatchExit(id, instance);
      }
    }
  }
  it = sandboxes_.find(id);
  if (it == sandboxes_.end()) co_return Unexpected(Error(Errc::kNotFound, "sandbox was killed while resuming"));
  sb = it->second.get();
  sb->transitioning = false;
  if (!st) co_return Unexpected(std::move(st).error().Wrap("resume"));
  if (!sb->dns) StartDns(*sb, *instance);
  sb->instance = std::move(instance);
  sb->row.state = "running";
  sb->row.end_at_ms = want_end;
  KILN_CO_TRY(Persist(*sb));
  ArmTimer(*sb);
  KILN_LOG(Info, "sandbox resumed", {"sandbox", id});
  co_return std::make_pair(sb->row, true);
}

http::Task<Status> SandboxManager::ResumeForTraffic(std::string id) {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end() || it->second->row.state != "paused" || !it->second->row.auto_resume) {
    co_return Unexpected(Error(Errc::kNotFound, "The sandbox was not found"));
  }
  KILN_LOG(Info, "resuming sandbox for incoming traffic", {"sandbox", id});
  auto resumed = co_await Connect(id, options_.default_timeout_s);
  if (!resumed) co_return Unexpected(std::move(resumed).error());
  co_return Status();
}

Result<std::shared_ptr<Instance>> SandboxManager::RunningInstance(const std::string& id) const {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end() || it->second->row.state == "paused") {
    return Fail(Errc::kNotFound, "The sandbox was not found");
  }
  if (it->second->transitioning || !it->second->instance) {
    return Fail(Errc::kUnavailable, "The sandbox is pausing or resuming");
  }
  return it->second->instance;
}

void SandboxManager::Sample(Sandbox& sb) {
  if (!sb.instance || sb.row.state != "running") return;
  auto stats = sb.instance->Stats();
  if (!stats) return;
  int64_t now = NowMs();
  MetricSample m;
  m.timestamp_ms = now;
  m.cpu_count = sb.row.cpu_count;
  if (sb.last_sample_ms > 0 && now > sb.last_sample_ms && stats->cpu_usage_ns >= sb.last_cpu_ns) {
    double used_ns = static_cast<double>(stats->cpu_usage_ns - sb.last_cpu_ns);
    double wall_ns = static_cast<double>(now - sb.last_sample_ms) * 1e6 * m.cpu_count;
    m.cpu_used_pct = std::min(100.0, 100.0 * used_ns / wall_ns);
  }
  sb.last_cpu_ns = stats->cpu_usage_ns;
  sb.last_sample_ms = now;
  m.mem_used = stats->mem_used;
  m.mem_total = stats->mem_total;
  m.mem_cache = stats->mem_cache;
  m.disk_used = stats->disk_used;
  m.disk_total = stats->disk_total;
  sb.samples.push_back(m);
  while (sb.samples.size() > kMaxSamples) sb.samples.pop_front();
}

http::Task<void> SandboxManager::SampleLoop() {
  while (!stopping_) {
    sample_timer_.expires_after(options_.metrics_interval);
    boost::system::error_code ec;
    co_await sample_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec || stopping_) break;
    for (auto& [id, sb] : sandboxes_) {
      if (!sb->transitioning) Sample(*sb);
    }
  }
}

Result<std::vector<MetricSample>> SandboxManager::Metrics(const std::string& id, int64_t start_s,
                                                          int64_t end_s) const {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return Fail(Errc::kNotFound, "sandbox \"" + id + "\" not found");
  std::vector<MetricSample> out;
  for (const auto& m : it->second->samples) {
    int64_t s = m.timestamp_ms / 1000;
    if (s >= start_s && s <= end_s) out.push_back(m);
  }
  return out;
}

}  // namespace kiln::kilnd
