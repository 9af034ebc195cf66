#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "envd/agent_state.h"
#include "http/connect.h"
#include "http/server.h"

namespace kiln::envd {

class DirWatcher;

// filesystem.Filesystem over Connect-RPC: Stat, ListDir, MakeDir, Move, Remove (unary),
// WatchDir (server stream) and the polling watchers CreateWatcher / GetWatcherEvents /
// RemoveWatcher. Requests act as the Basic-auth user (else the default user): paths resolve
// against that user's home and new directories belong to that user.
// Not thread-safe; lives on the agent's io_context thread.
class FilesystemService {
 public:
  // Most unread events a watcher or stream buffers before it fails with resource_exhausted.
  static constexpr size_t kMaxPendingEvents = 10000;
  // Keepalive period of WatchDir when the Keepalive-Ping-Interval header is absent.
  static constexpr std::chrono::seconds kDefaultKeepalive{90};

  FilesystemService(boost::asio::io_context& io, AgentState& state);
  ~FilesystemService();
  void Register(http::Router& router);

  // Entries handled between two turns of the loop in the walks that can be long (ListDir,
  // Remove, setting up a recursive watch).
  static constexpr size_t kStepBudget = 256;

  // The RPCs, callable directly by tests. Each returns the response message.
  Result<nlohmann::json> Stat(const http::connect::CallContext& ctx, const nlohmann::json& req);
  http::Task<Result<nlohmann::json>> ListDir(const http::connect::CallContext& ctx,
                                             const nlohmann::json& req);
  Result<nlohmann::json> MakeDir(const http::connect::CallContext& ctx,
                                 const nlohmann::json& req);
  Result<nlohmann::json> Move(const http::connect::CallContext& ctx, const nlohmann::json& req);
  http::Task<Result<nlohmann::json>> Remove(const http::connect::CallContext& ctx,
                                            const nlohmann::json& req);
  http::Task<Status> WatchDir(const http::connect::CallContext& ctx, const nlohmann::json& req,
                              http::connect::ServerStream& stream);
  http::Task<Result<nlohmann::json>> CreateWatcher(const http::connect::CallContext& ctx,
                                                   const nlohmann::json& req);
  Result<nlohmann::json> GetWatcherEvents(const http::connect::CallContext& ctx,
                                          const nlohmann::json& req);
  Result<nlohmann::json> RemoveWatcher(const http::connect::CallContext& ctx,
                                       const nlohmann::json& req);

 private:
  struct WatchSpec;
  struct ListSpec;
  struct Watcher {
    std::shared_ptr<DirWatcher> watcher;
    bool include_entry = false;
  };

  Result<ListSpec> ParseList(const http::connect::CallContext& ctx, const nlohmann::json& req);
  Result<std::string> ParseRemove(const http::connect::CallContext& ctx,
                                  const nlohmann::json& req);
  nlohmann::json AddWatcher(std::shared_ptr<DirWatcher> watcher, bool include_entry);
  Result<WatchSpec> ParseWatch(const http::connect::CallContext& ctx, const nlohmann::json& req);
  http::Task<Result<std::shared_ptr<DirWatcher>>> StartWatch(const WatchSpec& spec);
  // Lets the loop run other work before the calling coroutine continues.
  http::Task<void> Yield();
  std::string NewWatcherId();

  boost::asio::io_context& io_;
  AgentState& state_;
  std::map<std::string, Watcher> watchers_;
  uint64_t watcher_counter_ = 0;
};

}  // namespace kiln::envd
