#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>

#include "envd/agent_state.h"
#include "envd/process/child_reaper.h"
#include "envd/process/managed_process.h"
#include "envd/process/process_table.h"
#include "http/connect.h"
#include "http/server.h"

namespace kiln::envd {

// The `process.Process` Connect service: Start and Connect (server streams), List,
// SendInput, SendSignal, CloseStdin and Update. Owns the table of started processes and the
// agent's one child reaper. Processes outlive the calls that started them; a Start's
// Connect-Timeout-Ms is the process's lifetime. Lives on the io_context thread; on
// destruction every process still running is SIGKILLed.
class ProcessService {
 public:
  // Default Keepalive-Ping-Interval when the client sends none.
  static constexpr auto kDefaultKeepalive = std::chrono::seconds(90);

  ProcessService(boost::asio::io_context& io, AgentState& state);
  ~ProcessService();
  ProcessService(const ProcessService&) = delete;
  ProcessService& operator=(const ProcessService&) = delete;

  void Register(http::Router& router);
  // The agent's one reaper, for other components that start children (ChildReaper::Watch).
  ChildReaper& reaper() { return reaper_; }

 private:
  http::Task<Status> Start(const http::connect::CallContext& ctx, const nlohmann::json& req,
                           http::connect::ServerStream& out);
  http::Task<Status> Connect(const http::connect::CallContext& ctx, const nlohmann::json& req,
                             http::connect::ServerStream& out);
  Result<nlohmann::json> List();
  http::Task<Result<nlohmann::json>> SendInput(const nlohmann::json& req);
  Result<nlohmann::json> SendSignal(const nlohmann::json& req);
  Result<nlohmann::json> CloseStdin(const nlohmann::json& req);
  Result<nlohmann::json> Update(const nlohmann::json& req);

  // Validates the request and spawns the process for a Start call.
  Result<std::shared_ptr<ManagedProcess>> Launch(const http::connect::CallContext& ctx,
                                                 const nlohmann::json& req);
  Result<std::shared_ptr<ManagedProcess>> FindRunning(const nlohmann::json& req);
  void OnChildExit(pid_t pid, int wait_status);

  boost::asio::io_context& io_;
  AgentState& state_;
  ProcessTable table_;
  ChildReaper reaper_;
};

// Streams a process's events to one client: the start event, then output and keepalives,
// then the end event. Ends early when the client is gone or too slow, or at the call's
// deadline (kTimeout; with `kill_at_deadline` the process group is SIGKILLed first).
http::Task<Status> StreamProcessEvents(const http::connect::CallContext& ctx,
                                       std::shared_ptr<ManagedProcess> proc,
                                       std::shared_ptr<Subscriber> sub,
                                       http::connect::ServerStream& out, bool kill_at_deadline);

}  // namespace kiln::envd
