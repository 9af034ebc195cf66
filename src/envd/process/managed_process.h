#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "http/server.h"
#include "sys/spawn.h"
#include "wire/process.h"

namespace kiln::envd {

// The end event for a wait(2) status: "exit status 3" / exitCode 3, or "signal: killed" /
// exitCode -1; `error` repeats the status unless the process exited with 0.
wire::EndEvent EndEventFromWaitStatus(int wait_status);

// One item of a process's event stream: a chunk of output or the end.
struct ProcessEvent {
  wire::OutputKind kind = wire::OutputKind::kStdout;
  std::string data;
  std::optional<wire::EndEvent> end;
};

// The receiving end of one client stream (a Start or a Connect call). The process pushes
// events without ever waiting; the stream's coroutine pops them and sends them at the
// client's pace. A subscriber that falls more than kMaxQueuedBytes behind is cut off
// (overflowed) instead of holding memory or the process back. Lives on the io thread.
class Subscriber {
 public:
  static constexpr size_t kMaxQueuedBytes = 32 * 1024 * 1024;

  explicit Subscriber(boost::asio::io_context& io);

  void Push(std::shared_ptr<const ProcessEvent> ev);
  // The oldest queued event; nullptr when none.
  std::shared_ptr<const ProcessEvent> Pop();
  bool overflowed() const { return overflowed_; }
  // Returns when an event is queued (possibly at once) or at `until`.
  http::Task<void> WaitUntil(std::chrono::steady_clock::time_point until);

 private:
  std::deque<std::shared_ptr<const ProcessEvent>> queue_;
  size_t queued_bytes_ = 0;
  bool overflowed_ = false;
  boost::asio::steady_timer wake_;
};

// What to start and how to connect it.
struct LaunchSpec {
  // Program, environment, cwd, identity; the descriptors are filled in by LaunchProcess.
  sys::SpawnSpec spawn;
  // Run on a new PTY of this size (stdout and stderr then arrive as one `pty` stream).
  std::optional<wire::PtySize> pty;
  // Pipe mode: stdin is a pipe the client writes to; otherwise /dev/null.
  bool stdin_pipe = true;
  // Reported by List (cwd already resolved).
  wire::ProcessConfig config;
  std::optional<std::string> tag;
};

// A child the agent started, from spawn until its end has been delivered: reads its output
// (non-blocking descriptors on the io_context) and fans it out to subscribers, writes its
// stdin or terminal, signals its process group, and turns the reaper's wait status into the
// end event once the output is drained. Shared by the process table and the coroutines
// working on it; lives on the io thread only.
class ManagedProcess : public std::enable_shared_from_this<ManagedProcess> {
 public:
  // After the child exits, output is still read until EOF, but no longer than this: a
  // background grandchild (`sleep 100 &`) may keep the pipes open forever.
  static constexpr auto kDrainGrace = std::chrono::milliseconds(100);

  struct Fds {
    UniqueFd stdin_w;     // pipe mode with stdin; else empty
    UniqueFd stdout_r;    // pipe mode
    UniqueFd stderr_r;    // pipe mode
    UniqueFd pty_master;  // PTY mode
  };

  // Takes over a spawned child and starts reading its output.
  static std::shared_ptr<ManagedProcess> Adopt(boost::asio::io_context& io, pid_t pid,
                                               wire::ProcessConfig config,
                                               std::optional<std::string> tag, Fds fds);
  ManagedProcess(boost::asio::io_context& io, pid_t pid, wire::ProcessConfig config,
                 std::optional<std::string> tag, Fds fds);
  ~ManagedProcess();

  pid_t pid() const { return pid_; }
  const std::optional<std::string>& tag() const { return tag_; }
  wire::ProcessInfo info() const;
  // The child has been reaped (it may still be draining output).
  bool exited() const { return wait_status_.has_value(); }
  // The end event has been published; no more events follow.
  bool finished() const { return end_.has_value(); }
  std::chrono::steady_clock::time_point finished_at() const { return finished_at_; }
  // The process was killed because its deadline passed.
  bool timed_out() const { return timed_out_; }

  // SIGKILLs the process group at `deadline` unless the child has exited by then.
  void KillAt(std::chrono::steady_clock::time_point deadline);
  // The reaper collected the child with this wait status.
  void OnExit(int wait_status);

  // A new subscriber for the events from now on; after the end it only gets the end.
  std::shared_ptr<Subscriber> Subscribe();

  // Writes to stdin (pipe mode) or to the terminal (PTY mode; `stdin` input goes there too).
  // Concurrent writes are applied one after another. kFailedPrecondition when stdin was not
  // requested or is closed, or `pty` input is sent to a process without a PTY.
  http::Task<Status> WriteInput(wire::ProcessInput input);
  // EOF on the stdin pipe. kFailedPrecondition in PTY mode.
  Status CloseStdin();
  Status Resize(wire::PtySize size);
  // Sends `sig` to the process group. kNotFound once the child has exited.
  Status Signal(int sig);

 private:
  using Descriptor = boost::asio::posix::stream_descriptor;

  void StartReaders();
  http::Task<void> ReadLoop(Descriptor& fd, wire::OutputKind kind);
  void Broadcast(std::shared_ptr<const ProcessEvent> ev);
  void PublishData(wire::OutputKind kind, std::string data);
  // Stops waiting for EOF: pending reads finish with what is buffered.
  void StopReading();
  void MaybeFinish();
  Descriptor* InputDescriptor(wire::InputKind kind, std::string* why);

  boost::asio::io_context& io_;
  const pid_t pid_;
  const wire::ProcessConfig config_;
  const std::optional<std::string> tag_;
  std::optional<Descriptor> stdin_;
  std::optional<Descriptor> stdout_;
  std::optional<Descriptor> stderr_;
  std::optional<Descriptor> pty_;
  int open_readers_ = 0;
  bool draining_ = false;
  bool writing_ = false;
  bool timed_out_ = false;
  std::optional<int> wait_status_;
  std::optional<wire::EndEvent> end_;
  std::chrono::steady_clock::time_point finished_at_;
  // Expires at time_point::max; cancel() wakes every WriteInput waiting for its turn.
  boost::asio::steady_timer input_turn_;
  boost::asio::steady_timer drain_timer_;
  boost::asio::steady_timer deadline_timer_;
  std::vector<std::weak_ptr<Subscriber>> subscribers_;
};

// Creates the pipes or the PTY, spawns `spec.spawn` connected to them, and adopts the child.
// The caller must register the process with the reaper's dispatch before returning to the
// io_context (the child may already have exited).
Result<std::shared_ptr<ManagedProcess>> LaunchProcess(boost::asio::io_context& io,
                                                      LaunchSpec spec);

}  // namespace kiln::envd
