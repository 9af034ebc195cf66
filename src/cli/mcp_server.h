#pragma once

// The two MCP transports of `kiln mcp`.
//
// stdio: one JSON-RPC message per line on stdin, responses one per line on stdout, nothing
// else on stdout (diagnostics go to stderr). Requests are served concurrently; the session
// ends at end of input or on SIGINT/SIGTERM/SIGHUP, and its sandboxes are killed (except the
// kept ones) before the process exits.
//
// Streamable HTTP (MCP 2025-06-18): POST /mcp carries one message; initialize opens a session
// whose id comes back in Mcp-Session-Id and must accompany every later request. Requests are
// answered with application/json (or one text/event-stream event when the client accepts only
// that), notifications with 202. GET /mcp answers 405 (no server-initiated stream); DELETE
// /mcp ends the session. Sessions idle longer than the idle limit end too. Requests with an
// Origin header from anywhere but loopback are refused (DNS rebinding).

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "base/error.h"
#include "cli/io.h"
#include "cli/mcp_session.h"
#include "http/server.h"

namespace kiln::cli::mcp {

// Serves one session on io.in/io.out until end of input or a signal; returns the exit status.
int ServeStdio(const McpConfig& config, const Io& io);

struct HttpOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::chrono::seconds session_idle{3600};
};

class McpHttpServer {
 public:
  McpHttpServer(boost::asio::io_context& io, McpConfig config, HttpOptions options);
  ~McpHttpServer();

  Status Listen();
  uint16_t port() const { return server_.port(); }
  // Starts accepting and the idle-session reaper.
  void Start();
  // Ends every session (killing their sandboxes) and stops the reaper.
  http::Task<void> CloseAll();

  size_t session_count() const { return sessions_.size(); }

 private:
  struct Entry {
    std::shared_ptr<McpSession> session;
    std::chrono::steady_clock::time_point last_used;
    int in_flight = 0;
  };

  http::Task<void> Handle(http::Exchange& ex);
  http::Task<void> Post(http::Exchange& ex);
  http::Task<void> Delete(http::Exchange& ex);
  http::Task<void> Reap();
  std::string NewSessionId() const;

  boost::asio::io_context& io_;
  McpConfig config_;
  HttpOptions options_;
  http::Server server_;
  std::map<std::string, std::shared_ptr<Entry>, std::less<>> sessions_;
  boost::asio::steady_timer reaper_;
  bool closing_ = false;
};

// Serves MCP over HTTP until SIGINT/SIGTERM; prints "kiln mcp: listening on
// http://HOST:PORT/mcp" on io.out once bound. Returns the exit status.
int ServeHttp(const McpConfig& config, const HttpOptions& options, const Io& io);

}  // namespace kiln::cli::mcp
