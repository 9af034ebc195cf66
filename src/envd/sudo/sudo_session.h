#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "envd/process/child_reaper.h"
#include "envd/sudo/sudo_plan.h"
#include "envd/sudo/sudo_policy.h"
#include "envd/sudo/sudo_protocol.h"

namespace kiln::envd::sudo {

// What every session of one server shares.
struct SessionContext {
  boost::asio::io_context& io;
  ChildReaper& reaper;
  const SudoPolicy& policy;
  // Shown by `sudo -l`.
  std::string hostname;
  // A client must have sent its whole request by then.
  std::chrono::milliseconds request_timeout{30'000};
};

// One sudo client connection, from accept to the reply: reads the request and the client's
// descriptors, checks the peer's credentials against the policy, spawns the command (own
// process group, the client's descriptors as stdio), forwards signal messages to that group,
// and answers with the command's exit status. A client that goes away before the command ends
// takes it down like a terminal hangup (SIGHUP to the group); its exit is then collected by
// the reaper's default handler. Shared by the server and the pending handlers; lives on the io
// thread.
class SudoSession : public std::enable_shared_from_this<SudoSession> {
 public:
  using Socket = boost::asio::local::stream_protocol::socket;
  // Called once when the session has ended by itself (reply sent or client gone).
  using DoneFn = std::function<void(SudoSession*)>;

  SudoSession(const SessionContext& ctx, Socket socket, DoneFn done);
  SudoSession(const SudoSession&) = delete;
  SudoSession& operator=(const SudoSession&) = delete;

  void Start();
  // Ends the session at once without calling `done`: SIGKILLs a running command's group,
  // drops its reaper registration, closes the connection. For the server's destruction.
  void Abort();

  // The command's pid while it runs, else 0.
  pid_t command_pid() const { return running_ ? pid_ : 0; }

 private:
  enum class State { kReadingRequest, kRunning, kDone };

  void WaitReadable();
  void OnReadable();
  // Receives what is queued: bytes into reader_, descriptors into fds_ (request phase only).
  // False when the session ended.
  bool ReceiveAvailable();
  // False when the session ended.
  bool HandleFrames();
  void HandleRequest(const std::string& payload);
  // Spawns the command for `req`; a reply when there is nothing to run (or it failed).
  std::optional<SudoReply> Launch(const SudoRequest& req);
  Result<pid_t> SpawnWithFallback(SudoCommand& cmd);
  void OnCommandExit(int wait_status);
  void OnClientGone();
  void Finish(const SudoReply& reply);
  void Close();

  const SessionContext& ctx_;
  Socket socket_;
  DoneFn done_;
  boost::asio::steady_timer request_timer_;
  State state_ = State::kReadingRequest;
  uid_t peer_uid_ = 0;
  gid_t peer_gid_ = 0;
  bool peer_known_ = false;
  FrameReader reader_{kMaxRequestBytes};
  std::vector<UniqueFd> fds_;
  bool fds_truncated_ = false;
  pid_t pid_ = 0;
  bool running_ = false;
};

}  // namespace kiln::envd::sudo
