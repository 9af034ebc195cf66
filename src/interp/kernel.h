#pragma once

// A Jupyter kernel process and the client side of its protocol (v5.3) over ZeroMQ: no Jupyter
// server in between. kiln-interp starts one Kernel per context and runs code through it.

#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "http/server.h"
#include "interp/jupyter_message.h"

namespace kiln::interp {

// How to start a kernel.
struct KernelLaunch {
  // The command; every "{connection_file}" in it is replaced by the connection file's path.
  // argv[0] without a '/' is looked up in the PATH of `env`.
  std::vector<std::string> argv;
  // "KEY=value" entries: the kernel's whole environment.
  std::vector<std::string> env;
  // Working directory, entered as the kernel's user ("/" when empty).
  std::string cwd;
  // Identity of the kernel process (applied when kiln-interp runs as root).
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  // An existing directory that the kernel's user can traverse. Start makes a private
  // directory "k-<id>" in it (mode 0700, owned by uid:gid) for the connection file and the
  // ipc sockets ("<dir>/kernel-<port>"), and removes it when the kernel is gone. Keep the
  // path short: a socket path has at most 107 bytes.
  std::filesystem::path runtime_dir;
  // Start fails with kTimeout when the kernel has not answered kernel_info_request by then.
  std::chrono::milliseconds start_timeout{60000};
  // stdout and stderr of the kernel; -1 means /dev/null. The caller keeps ownership.
  int log_fd = -1;
};

struct ExecuteOptions {
  bool silent = false;
  bool store_history = true;
  bool allow_stdin = false;
  bool stop_on_error = true;
};

// The shell reply to one execute_request.
struct ExecuteReply {
  std::string status;            // "ok", "error" or "aborted"
  int64_t execution_count = 0;   // 0 when the kernel sent none (silent executions)
  nlohmann::json content;        // the whole reply content (ename/evalue/traceback, payload...)
};

// Gets every iopub message of a running execution except "status": execute_input, stream,
// display_data, update_display_data, execute_result, error, clear_output, and whatever else
// the kernel publishes with that parent. Called on the executor's thread, synchronously from
// the socket reader: it must not block, and must not throw.
using OutputFn = std::function<void(const Message&)>;

// One kernel process (leader of its own process group) and its shell/control/stdin DEALER
// and iopub SUB sockets. Owns the process: the destructor SIGKILLs the process group, reaps
// the kernel and removes its runtime directory. The process is watched through a pidfd, so
// a crash is seen at once (running Executes fail, on_exit runs). Not thread-safe: use it on
// the executor's one thread. The Kernel may be destroyed while an Execute is suspended: that
// Execute then completes with kUnavailable.
class Kernel {
 public:
  // Counters of what the kernel sent that was dropped.
  struct Stats {
    uint64_t bad_signature = 0;  // HMAC did not match
    uint64_t malformed = 0;      // unparseable frames or JSON
    uint64_t unmatched = 0;      // valid, but for no request in flight (late output, ...)
  };

  // Writes the connection file, spawns the kernel and connects to it; completes once the
  // kernel answered kernel_info_request and its iopub subscription is live (the request is
  // repeated until an iopub status message for one of them arrives). Errors: argv empty or
  // bad paths -> kInvalidArgument; spawn errors as sys::Spawn reports them ("spawn /x: exec:
  // No such file or directory"); the process exiting first -> kUnavailable "kernel exited
  // during startup: exited with status 1"; no answer within start_timeout -> kTimeout (the
  // process is killed).
  static http::Task<Result<std::unique_ptr<Kernel>>> Start(boost::asio::any_io_executor executor,
                                                           KernelLaunch launch);

  Kernel(const Kernel&) = delete;
  Kernel& operator=(const Kernel&) = delete;
  ~Kernel();

  // Runs `code` (execute_request on shell) and completes when both the execute_reply and
  // the iopub status "idle" for it have arrived; `on_output` (may be empty) gets the
  // execution's iopub messages in between. Errors: kFailedPrecondition while another Execute
  // runs; kUnavailable "kernel died: <status>" when the process is gone or dies meanwhile
  // (or the Kernel is destroyed); kResourceExhausted when the request cannot be queued.
  // A request that ipykernel aborts unrun only because it arrived right after a previous
  // error (stop_on_error's abort window) is sent again, so "aborted" is rare. Kernel faults
  // do not hang it: with idle but no reply for 1 s (ipykernel sends none when SIGINT lands
  // outside the user's code) the reply is {"status": "error", "ename": "KeyboardInterrupt"
  // (after Interrupt) or "KernelError"}; with the reply but no idle (dropped by the kernel's
  // iopub high-water mark) a kernel_info_request probe's iopub status stands in for it.
  http::Task<Result<ExecuteReply>> Execute(std::string code, ExecuteOptions options,
                                           OutputFn on_output);
  // Execute(code, {.silent = true, .store_history = false}, nullptr): for setup code.
  http::Task<Result<ExecuteReply>> ExecuteSilent(std::string code);

  // SIGINT to the kernel's main thread (interrupt_mode "signal"): a running execution ends
  // with a KeyboardInterrupt error. kUnavailable when the kernel is gone.
  Status Interrupt();
  // SIGKILLs the process group and reaps the kernel now. Running Executes complete with
  // kUnavailable; on_exit is not called. Idempotent.
  void Kill();

  bool alive() const;
  // True while an Execute runs.
  bool busy() const;
  pid_t pid() const;
  // "exited with status 1", "killed by signal 9"; empty while the kernel runs.
  std::string exit_description() const;
  // The content of the kernel's kernel_info_reply (language_info, implementation, ...).
  const nlohmann::json& kernel_info() const;
  const std::string& session() const;
  Stats stats() const;

  // Called once, on the executor, when the process exits by itself (crash, os._exit, killed
  // from outside), with its wait status; not after Kill() or destruction. By then the
  // process group has been SIGKILLed and the kernel reaped. The callback may destroy the
  // Kernel.
  void set_on_exit(std::function<void(int wait_status)> on_exit);

  struct State;  // shared with the socket readers and the process watch

 private:
  explicit Kernel(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

// "exited with status N" / "killed by signal N" for a waitpid status.
std::string DescribeWaitStatus(int wait_status);

}  // namespace kiln::interp
