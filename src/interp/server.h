#pragma once

// kiln-interp's HTTP API (e2b-compat.md §4.1): /health, /execute (NDJSON stream), /contexts,
// plus /ready for kilnd (200 once the default python and javascript contexts run).

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "http/server.h"
#include "interp/clock_jump.h"
#include "interp/contexts.h"

namespace kiln::interp {

struct ServerOptions {
  // Where kiln-envd answers GET /envs (the sandbox's global env vars; it also checks the
  // access token that clients send with /execute).
  std::string envd_host = "127.0.0.1";
  uint16_t envd_port = 49983;
  // A keepalive line goes out after this long without output, so that a vanished client is
  // noticed (and its execution interrupted).
  std::chrono::milliseconds keepalive_interval{5000};
  // Output waiting for a slow client beyond this is dropped (stdout/stderr only) with a note.
  size_t max_pending_bytes = 64u << 20;
  // Largest request body.
  size_t max_body_bytes = 16u << 20;
};

class InterpServer {
 public:
  InterpServer(boost::asio::any_io_executor executor, Contexts& contexts, ServerOptions options);
  ~InterpServer();

  // Creates the default python and javascript contexts; /ready answers 200 afterwards.
  http::Task<Status> StartDefaults();
  // StartDefaults, logging the outcome (for co_spawn).
  http::Task<void> StartDefaultsLogged();
  // Runs until the executor stops: whenever the wall clock is set (the agent's /init after a
  // restore from a memory snapshot), reseeds every context's kernel at once, so the work
  // (a new node process, say) is done before the sandbox's first cell rather than in it.
  http::Task<void> WatchClock();
  http::Task<void> Handle(http::Exchange& ex);

  struct Run;  // one /execute in flight

 private:
  http::Task<void> HandleExecute(http::Exchange& ex);
  http::Task<void> HandleCreateContext(http::Exchange& ex);
  http::Response ListContexts() const;
  // The sandbox's env vars, fetched from the agent with the client's token on first use; a
  // token the agent rejects gives kPermissionDenied.
  http::Task<Result<std::map<std::string, std::string>>> GlobalEnv(std::string token);
  http::Task<void> Execute(std::shared_ptr<Run> run);
  http::Task<void> ExecuteLocked(std::shared_ptr<Run> run);
  // When the sandbox was restored from a memory snapshot since `context`'s kernel was last
  // seeded, reseeds it (ReseedCode). The caller holds the context's mutex.
  http::Task<void> ReseedIfRestored(Context& context);

  boost::asio::any_io_executor executor_;
  Contexts& contexts_;
  ServerOptions options_;
  bool ready_ = false;
  std::optional<std::map<std::string, std::string>> global_env_;
  std::string accepted_token_;
  ClockJumpDetector clock_;  // restores from a memory snapshot (vm runtime)
};

}  // namespace kiln::interp
