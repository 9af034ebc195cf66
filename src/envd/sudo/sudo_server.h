#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "base/error.h"
#include "envd/process/child_reaper.h"
#include "envd/sudo/sudo_policy.h"
#include "envd/sudo/sudo_protocol.h"
#include "envd/sudo/sudo_session.h"

namespace kiln::envd::sudo {

struct SudoServerOptions {
  // The listening socket; its directory is created when missing, a stale socket replaced.
  std::string socket_path = kDefaultSocketPath;
  // Directory holding etc/passwd and etc/group.
  std::string root = "/";
  // Connections beyond this many get an error reply at once.
  size_t max_sessions = 64;
  std::chrono::milliseconds request_timeout{30'000};
};

// The agent's side of `sudo`: a sandbox's processes run with no_new_privs, so the setuid
// /usr/bin/sudo cannot work; the template's `sudo` is kiln-envd itself (RunSudoClient), which
// asks this server, running as the sandbox's root, to start the command.
// SECURITY: the socket is world-connectable (0666) on purpose; the peer's uid from
// SO_PEERCRED decides (SudoPolicy). Commands run inside the same sandbox with the agent's own
// (namespaced) root at most: nothing here reaches outside it.
// Lives on the io thread. Destruction SIGKILLs commands still running and removes the socket.
class SudoServer {
 public:
  static Result<std::unique_ptr<SudoServer>> Start(boost::asio::io_context& io, ChildReaper& reaper,
                                                   SudoServerOptions options);
  ~SudoServer();
  SudoServer(const SudoServer&) = delete;
  SudoServer& operator=(const SudoServer&) = delete;

  size_t active_sessions() const { return sessions_.size(); }
  const std::string& socket_path() const { return options_.socket_path; }

 private:
  using Acceptor = boost::asio::local::stream_protocol::acceptor;

  SudoServer(boost::asio::io_context& io, ChildReaper& reaper, SudoServerOptions options);
  void Accept();
  void OnAccepted(SudoSession::Socket socket);

  boost::asio::io_context& io_;
  SudoServerOptions options_;
  SudoPolicy policy_;
  SessionContext context_;
  Acceptor acceptor_;
  boost::asio::steady_timer retry_timer_;
  // The inode of the socket this server created: only that one is removed at the end.
  ino_t socket_inode_ = 0;
  std::map<SudoSession*, std::shared_ptr<SudoSession>> sessions_;
  // Pending handlers check it: the acceptor's completions may outlive the server.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace kiln::envd::sudo
