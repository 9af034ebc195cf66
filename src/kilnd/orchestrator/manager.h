#pragma once

// SandboxManager: the sandbox state machine (creating -> running -> pausing -> paused ->
// resuming -> running; killed), timeouts, the warm pool, metrics sampling and the store.
// Lives on kilnd's I/O thread; blocking runtime calls go to a worker pool.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "http/client.h"
#include "http/server.h"
#include "kilnd/orchestrator/dns_forwarder.h"
#include "kilnd/orchestrator/store.h"
#include "kilnd/runtime/runtime.h"

namespace kiln::kilnd {

// What a sandbox is made from.
struct TemplateSpec {
  std::string name;
  std::filesystem::path rootfs;
  std::string default_user = "user";
  std::string workdir = "/home/user";
  std::map<std::string, std::string> env;
  // A service started in every sandbox after the agent answers (as root, through the agent),
  // ready once GET <ready_path> on <ready_port> inside the sandbox answers 2xx. Empty: none.
  std::vector<std::string> start_cmd;
  uint16_t ready_port = 0;
  std::string ready_path = "/";
  // The runtime its sandboxes use by default (a name of ManagerOptions::runtimes or the
  // default runtime's); empty: kilnd's default.
  std::string runtime;
};

// Sandbox metadata key that picks the runtime for one sandbox ("ns", "vm").
inline constexpr char kRuntimeMetadataKey[] = "kiln.runtime";
using TemplateResolver = std::function<Result<TemplateSpec>(std::string_view name)>;

struct ManagerOptions {
  std::filesystem::path data_dir;     // snapshots/ live here
  std::filesystem::path envd_binary;  // host path of kiln-envd
  std::filesystem::path interp_binary;  // host path of kiln-interp; empty: not available
  SandboxLimits limits;
  // Sandboxes kept ready per template (agent and template service up); templates not listed
  // (or 0) have no pool.
  std::map<std::string, int> pool_sizes = {{"base", 2}};
  int64_t default_timeout_s = 300;
  int64_t max_timeout_s = 24 * 3600;
  std::chrono::milliseconds metrics_interval{2000};
  // The pool stops refilling while the host has less memory available than this.
  uint64_t pool_min_available_bytes = 1ull << 30;
  // How long a new sandbox's agent may take to answer.
  std::chrono::milliseconds agent_ready_timeout{15000};
  // How long a template's service (e.g. kiln-interp with its kernels) may take to be ready.
  std::chrono::milliseconds service_ready_timeout{120000};
  int worker_threads = 2;
  // Relays DNS for sandboxes with internet access (not owned; null or disabled: none).
  DnsForwarder* dns = nullptr;
  // Port of kiln-envd inside every sandbox (tests point it elsewhere).
  uint16_t agent_port = 49983;
  // More runtimes by name besides the default one the manager is constructed with (which is
  // also known by its name()). A sandbox runs in the runtime its metadata kRuntimeMetadataKey
  // names, else in its template's, else in the default. Not owned; must outlive the manager.
  std::map<std::string, Runtime*> runtimes;
};

struct CreateParams {
  std::string template_id = "base";
  std::optional<int64_t> timeout_s;
  std::map<std::string, std::string> metadata;
  std::map<std::string, std::string> env_vars;
  bool allow_internet = true;
  bool auto_pause = false;
  bool auto_resume = false;
};

struct MetricSample {
  int64_t timestamp_ms = 0;
  uint32_t cpu_count = 1;
  double cpu_used_pct = 0;
  uint64_t mem_used = 0, mem_total = 0, mem_cache = 0;
  uint64_t disk_used = 0, disk_total = 0;
};

class SandboxManager {
 public:
  SandboxManager(boost::asio::io_context& io, Store& store, Runtime& runtime,
                 TemplateResolver templates, ManagerOptions options);
  ~SandboxManager();

  // Reconciles the store with reality after a (re)start: sandboxes that were running are
  // recorded as killed (their processes died with the previous kilnd, or were removed by
  // Runtime::CleanupStale); paused ones stay paused (their files are on disk). Then starts
  // the pool and the metrics sampler.
  Status Start();
  // Kills running sandboxes (paused ones keep their files) and stops the background work.
  http::Task<void> Shutdown();

  http::Task<Result<SandboxRow>> Create(CreateParams params);
  // Attach to a running sandbox (extends, never shortens, its end time) or resume a paused
  // one. The bool says whether it was resumed.
  http::Task<Result<std::pair<SandboxRow, bool>>> Connect(std::string id, int64_t timeout_s);
  // Running or paused sandbox; kNotFound otherwise.
  Result<SandboxRow> Get(const std::string& id) const;
  std::vector<SandboxRow> List() const;
  // Any sandbox this kilnd has recorded, killed ones included (with why they ended).
  Result<SandboxRow> Record(const std::string& id) const;
  // false when no such sandbox is alive or paused.
  http::Task<Result<bool>> Kill(std::string id);
  Status SetTimeout(const std::string& id, int64_t timeout_s);
  // kNotFound: unknown; kFailedPrecondition: already paused; kUnavailable: transitioning.
  http::Task<Status> Pause(std::string id);
  Result<std::vector<MetricSample>> Metrics(const std::string& id, int64_t start_s,
                                            int64_t end_s) const;

  // For the proxy: resumes a paused sandbox that asked to be resumed by traffic
  // (autoResume); kNotFound when it did not ask or is not paused.
  http::Task<Status> ResumeForTraffic(std::string id);

  // For the proxy: the instance of a running sandbox. kNotFound when it is unknown, killed
  // or paused; kUnavailable while it pauses or resumes.
  Result<std::shared_ptr<Instance>> RunningInstance(const std::string& id) const;

  size_t pool_ready(const std::string& template_id) const;
  // template -> (ready, target) for every pooled template.
  std::map<std::string, std::pair<size_t, size_t>> PoolStatus() const;

 private:
  struct Sandbox;
  struct PoolEntry {
    std::string id;
    std::shared_ptr<Instance> instance;
  };

  http::Task<Result<std::shared_ptr<Instance>>> StartInstance(
      const std::string& id, const TemplateSpec& tmpl, Runtime* runtime,
      std::optional<std::filesystem::path> files_from, bool allow_internet);
  // The runtime for a sandbox of `tmpl` with `metadata` (see ManagerOptions::runtimes);
  // kInvalidArgument naming the runtimes there are for an unknown one.
  Result<Runtime*> RuntimeFor(const TemplateSpec& tmpl,
                              const std::map<std::string, std::string>& metadata) const;
  Result<Runtime*> RuntimeFor(const TemplateSpec& tmpl) const;  // no metadata: the pool's
  http::Task<Status> WaitAgentReady(Instance& instance);
  http::Task<void> WarmUp(Instance& instance, std::string user);
  http::Task<Status> StartService(Instance& instance, const TemplateSpec& tmpl);
  http::Task<void> CollectServiceOutput(std::shared_ptr<http::ClientConnection> conn,
                                        std::shared_ptr<std::string> raw);
  // GET `path` on `port` inside the sandbox until it answers 2xx or `timeout` passes.
  http::Task<Status> WaitHttpReady(Instance& instance, uint16_t port, std::string path,
                                   std::chrono::milliseconds timeout);
  http::Task<Status> InitAgent(Instance& instance, const Sandbox& sb, const TemplateSpec& tmpl);
  // POST /init with `body`; `token` (if any) is the agent's current access token.
  http::Task<Status> PostInit(Instance& instance, std::string body, std::string token);
  http::Task<void> RefillPool(std::string template_id);
  void MaybeRefill(const std::string& template_id);
  size_t PoolTarget(const std::string& template_id) const;
  void ArmTimer(Sandbox& sb);
  void StartDns(Sandbox& sb, Instance& instance);
  http::Task<void> OnTimeout(std::string id);
  http::Task<void> Destroy(std::shared_ptr<Instance> instance);
  // Notices when a sandbox's init dies on its own (OOM kill, crash) and retires it.
  void WatchExit(const std::string& id, const std::shared_ptr<Instance>& instance);
  void OnInstanceExit(const std::string& id, const Instance* instance);
  http::Task<void> SampleLoop();
  void Sample(Sandbox& sb);
  Status Persist(const Sandbox& sb);
  int64_t ClampTimeout(std::optional<int64_t> t) const;

  boost::asio::io_context& io_;
  Store& store_;
  Runtime& runtime_;
  TemplateResolver templates_;
  ManagerOptions options_;
  boost::asio::thread_pool workers_;
  std::map<std::string, std::unique_ptr<Sandbox>> sandboxes_;  // running, paused, transitioning
  std::map<std::string, std::deque<PoolEntry>> pool_;
  std::map<std::string, bool> refilling_;
  boost::asio::steady_timer sample_timer_;
  bool stopping_ = false;
  int64_t last_started_ms_ = 0;
};

}  // namespace kiln::kilnd
