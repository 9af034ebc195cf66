#include "interp/kernel.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <random>
#include <utility>

#include <openssl/rand.h>

#include "base/log.h"
#include "base/unique_fd.h"
#include "interp/zmq_socket.h"
#include "sys/dir_list.h"
#include "sys/spawn.h"

namespace kiln::interp {
namespace {

namespace net = boost::asio;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Ports of the ipc endpoints "<ip>-<port>": any distinct numbers do.
constexpr int kShellPort = 1;
constexpr int kIopubPort = 2;
constexpr int kStdinPort = 3;
constexpr int kControlPort = 4;
constexpr int kHeartbeatPort = 5;
// sockaddr_un.sun_path holds 107 bytes and a NUL.
constexpr size_t kMaxSocketPath = 107;
// libzmq retries a connect to a not yet bound ipc path after this long (default 100 ms):
// the kernel binds its sockets some hundred milliseconds after we connect.
constexpr int kReconnectIntervalMs = 20;
// Startup: repeat kernel_info_request this often until a reply comes, and this often after
// the reply until iopub delivers a status for one of them (the subscription is live).
constexpr auto kInfoRetry = 1000ms;
constexpr auto kIopubRetry = 100ms;
// ipykernel sends no execute_reply when SIGINT lands outside the user's code (it logs
// "KeyboardInterrupt caught in kernel" instead): after iopub idle, wait this long for it.
constexpr auto kMissingReplyGrace = 1000ms;
// Its iopub PUB socket has the default high-water mark and drops messages on a flood, the
// final "idle" too. After the reply, wait this long for idle, then (and again after each
// period) send a probe request: its iopub status comes after the lost idle would have.
constexpr auto kIdleProbePeriod = 500ms;

// Messages one reader handles before it lets other work on the io_context run.
constexpr size_t kDrainBatch = 256;

enum class Channel { kShell, kIopub, kStdin, kControl };

std::string RandomHex(size_t bytes) {
  std::vector<uint8_t> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    std::random_device rd;
    for (uint8_t& b : raw) b = static_cast<uint8_t>(rd());
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : raw) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::string_view StringField(const json& obj, const char* key) {
  if (!obj.is_object()) return {};
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return {};
  return it->get_ref<const std::string&>();
}

int WaitStatusFromSiginfo(const siginfo_t& info) {
  switch (info.si_code) {
    case CLD_EXITED: return (info.si_status & 0xff) << 8;
    case CLD_KILLED: return info.si_status & 0x7f;
    case CLD_DUMPED: return (info.si_status & 0x7f) | 0x80;
    default: return 0;
  }
}

json ConnectionInfo(const std::string& ip, const std::string& key) {
  return json{{"shell_port", kShellPort},     {"iopub_port", kIopubPort},
              {"stdin_port", kStdinPort},     {"control_port", kControlPort},
              {"hb_port", kHeartbeatPort},    {"ip", ip},
              {"key", key},                   {"transport", "ipc"},
              {"signature_scheme", "hmac-sha256"}, {"kernel_name", ""}};
}

json ExecuteContent(const std::string& code, const ExecuteOptions& o) {
  return json{{"code", code},
              {"silent", o.silent},
              {"store_history", o.store_history},
              {"user_expressions", json::object()},
              {"allow_stdin", o.allow_stdin},
              {"stop_on_error", o.stop_on_error}};
}

// Replaces every "{connection_file}" in `arg`.
std::string SubstituteConnectionFile(std::string arg, const std::string& path) {
  static constexpr std::string_view kPlaceholder = "{connection_file}";
  for (size_t pos = arg.find(kPlaceholder); pos != std::string::npos;
       pos = arg.find(kPlaceholder, pos + path.size())) {
    arg.replace(pos, kPlaceholder.size(), path);
  }
  return arg;
}

std::string PathFromEnv(const std::vector<std::string>& env) {
  for (const std::string& e : env) {
    if (e.starts_with("PATH=")) return e.substr(5);
  }
  return "/usr/local/bin:/usr/bin:/bin";
}

Status WriteConnectionFile(const std::string& path, const std::string& text, uid_t uid,
                           gid_t gid) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return FailErrno("create " + path);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("write " + path);
    done += static_cast<size_t>(n);
  }
  if (geteuid() == 0 && fchown(fd.get(), uid, gid) < 0) return FailErrno("chown " + path);
  return {};
}

// Removes the kernel's directory without following anything the kernel's user may have
// put there: entries are unlinked relative to a descriptor of the directory itself.
void RemoveRuntimeDir(const std::filesystem::path& dir) {
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return;
  if (Result<std::vector<std::string>> names = sys::ListDirNames(fd.get(), dir.string())) {
    for (const std::string& name : *names) {
      if (unlinkat(fd.get(), name.c_str(), 0) < 0 && errno == EISDIR) {
        unlinkat(fd.get(), name.c_str(), AT_REMOVEDIR);
      }
    }
  }
  fd.reset();
  if (rmdir(dir.c_str()) < 0 && errno != ENOENT) {
    KILN_LOG(Warn, "kernel: cannot remove runtime dir", {"dir", dir.string()},
             {"errno", errno});
  }
}

}  // namespace

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return "exited with status " + std::to_string(WEXITSTATUS(wait_status));
  }
  if (WIFSIGNALED(wait_status)) {
    return "killed by signal " + std::to_string(WTERMSIG(wait_status));
  }
  return "wait status " + std::to_string(wait_status);
}

// Everything a Kernel is, shared with the four socket readers and the process watch, which
// keep it alive until they have seen Close().
struct Kernel::State {
  // The execution in flight.
  struct Execution {
    std::string msg_id;
    OutputFn on_output;
    bool idle = false;
    std::optional<json> reply;
    bool delivered_output = false;  // on_output ran for it
    bool interrupted = false;       // Interrupt() ran meanwhile
    Clock::time_point idle_at;      // when idle arrived (valid once `idle`)
    Clock::time_point next_probe;   // when to probe for a lost idle (valid once `reply`)
    std::vector<std::string> probe_ids;
  };

  explicit State(net::any_io_executor ex)
      : executor(std::move(ex)), signer(""), wake(executor), pidfd(executor) {}
  ~State() { Close(); }

  Status Prepare(KernelLaunch& launch);
  Status SpawnProcess(KernelLaunch& launch, const std::string& connection_file);
  Status ConnectSockets(const std::string& ip);
  void StartWatchers(const std::shared_ptr<State>& self);
  http::Task<Status> Handshake(std::chrono::milliseconds timeout);

  Status SendShell(const Message& message);
  http::Task<void> WaitWake(Clock::time_point deadline);
  void Wake() { wake.cancel(); }

  ZmqSocket* Socket(Channel ch);
  // Receives and dispatches what is queued on `ch` now, at most `limit` messages; true when
  // it stopped at the limit.
  bool Drain(Channel ch, size_t limit);
  void Dispatch(Channel ch, Message message);
  void OnShell(Message message);
  void OnIopub(Message message);
  bool IsInfoRequest(std::string_view id) const;

  void OnProcessReadable(const std::shared_ptr<State>& self);
  // SIGKILLs the group while the leader is still unreaped (so the pgid cannot have been
  // reused), then reaps it; blocks only when `block`.
  bool KillGroupAndReap(bool block);
  bool ExecutionComplete() const;
  // Handles a missing reply or idle (see kMissingReplyGrace, kIdleProbePeriod) and returns
  // when to look again.
  Clock::time_point CheckExecutionTimers();
  bool ShouldRetryAborted(int attempt) const;
  Result<ExecuteReply> FinishExecution();
  void Close();

  net::any_io_executor executor;
  std::string session;
  MessageSigner signer;
  std::filesystem::path dir;
  // Declared before the sockets: destroyed after them.
  std::optional<ZmqContext> zmq;
  std::unique_ptr<ZmqSocket> shell;
  std::unique_ptr<ZmqSocket> iopub;
  std::unique_ptr<ZmqSocket> stdin_socket;
  std::unique_ptr<ZmqSocket> control;
  // Cancelled to wake the one coroutine waiting (Start or Execute).
  net::steady_timer wake;
  // The kernel's pidfd; readable when it exits.
  net::posix::stream_descriptor pidfd;
  pid_t pid = -1;
  bool alive = false;  // spawned and not yet reaped
  bool closed = false;
  int wait_status = 0;
  std::function<void(int)> on_exit;
  json kernel_info = json::object();
  Stats stats;

  std::vector<std::string> info_request_ids;  // only during startup
  bool info_reply = false;
  bool info_iopub = false;
  std::optional<Execution> exec;
};

namespace {

http::Task<void> ReadLoop(std::shared_ptr<Kernel::State> state, Channel ch) {
  ZmqSocket* socket = state->Socket(ch);
  for (;;) {
    if (state->Drain(ch, kDrainBatch)) {
      // A flood must not starve the rest of the io_context (the HTTP side): yield between
      // batches.
      co_await net::post(state->executor, net::use_awaitable);
      continue;
    }
    if (!co_await socket->WaitReadable()) co_return;
  }
}

}  // namespace

Status Kernel::State::Prepare(KernelLaunch& launch) {
  if (launch.argv.empty()) return Fail(Errc::kInvalidArgument, "kernel: empty argv");
  std::error_code ec;
  std::filesystem::path runtime = std::filesystem::absolute(launch.runtime_dir, ec);
  if (ec || launch.runtime_dir.empty()) {
    return Fail(Errc::kInvalidArgument, "kernel: bad runtime dir '" +
                                            launch.runtime_dir.string() + "'");
  }
  std::string id = RandomHex(8);
  std::string key = RandomHex(32);
  session = NewMessageId();
  signer = MessageSigner(key);
  std::filesystem::path kernel_dir = runtime / ("k-" + id);
  std::string ip = (kernel_dir / "kernel").string();
  if (ip.size() + 2 > kMaxSocketPath) {
    return Fail(Errc::kInvalidArgument, "kernel: runtime dir path too long for ipc sockets: " +
                                            runtime.string());
  }
  if (mkdir(kernel_dir.c_str(), 0700) < 0) return FailErrno("mkdir " + kernel_dir.string());
  dir = kernel_dir;
  if (geteuid() == 0 && chown(kernel_dir.c_str(), launch.uid, launch.gid) < 0) {
    return FailErrno("chown " + kernel_dir.string());
  }
  std::string connection_file = (kernel_dir / "connection.json").string();
  KILN_TRY(WriteConnectionFile(connection_file, DumpJson(ConnectionInfo(ip, key)), launch.uid,
                               launch.gid));
  KILN_TRY(SpawnProcess(launch, connection_file));
  return ConnectSockets(ip);
}

Status Kernel::State::SpawnProcess(KernelLaunch& launch, const std::string& connection_file) {
  sys::SpawnSpec spec;
  for (std::string& arg : launch.argv) {
    spec.argv.push_back(SubstituteConnectionFile(std::move(arg), connection_file));
  }
  if (spec.argv[0].find('/') != std::string::npos) {
    spec.path = spec.argv[0];
  } else {
    KILN_ASSIGN_OR_RETURN(spec.path, sys::FindExecutable(spec.argv[0], PathFromEnv(launch.env)));
  }
  spec.env = std::move(launch.env);
  spec.cwd = launch.cwd.empty() ? "/" : std::move(launch.cwd);
  spec.uid = launch.uid;
  spec.gid = launch.gid;
  spec.groups = std::move(launch.groups);
  spec.stdout_fd = launch.log_fd;
  spec.stderr_fd = launch.log_fd;
  KILN_ASSIGN_OR_RETURN(pid, sys::Spawn(spec));
  alive = true;
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    int err = errno;
    KillGroupAndReap(/*block=*/true);
    return FailErrno("pidfd_open", err);
  }
  boost::system::error_code ec;
  pidfd.assign(fd, ec);
  if (ec) {
    close(fd);
    KillGroupAndReap(/*block=*/true);
    return Fail(Errc::kInternal, "kernel: watch pidfd: " + ec.message());
  }
  return {};
}

Status Kernel::State::ConnectSockets(const std::string& ip) {
  KILN_ASSIGN_OR_RETURN(ZmqContext context, ZmqContext::Create());
  zmq.emplace(std::move(context));
  auto endpoint = [&](int port) { return "ipc://" + ip + "-" + std::to_string(port); };
  KILN_ASSIGN_OR_RETURN(shell, ZmqSocket::Open(executor, *zmq, ZMQ_DEALER));
  KILN_ASSIGN_OR_RETURN(control, ZmqSocket::Open(executor, *zmq, ZMQ_DEALER));
  KILN_ASSIGN_OR_RETURN(stdin_socket, ZmqSocket::Open(executor, *zmq, ZMQ_DEALER));
  KILN_ASSIGN_OR_RETURN(iopub, ZmqSocket::Open(executor, *zmq, ZMQ_SUB));
  // The kernel routes stdin requests to the shell peer with the same identity.
  for (ZmqSocket* s : {shell.get(), control.get(), stdin_socket.get()}) {
    KILN_TRY(s->SetOption(ZMQ_ROUTING_ID, session));
  }
  // iopub must not drop output on a flood: no high-water mark; the readers drain it
  // continuously and the layer above bounds what it keeps.
  KILN_TRY(iopub->SetOption(ZMQ_RCVHWM, 0));
  KILN_TRY(iopub->SetOption(ZMQ_SUBSCRIBE, std::string_view()));
  for (ZmqSocket* s : {shell.get(), control.get(), stdin_socket.get(), iopub.get()}) {
    KILN_TRY(s->SetOption(ZMQ_RECONNECT_IVL, kReconnectIntervalMs));
  }
  KILN_TRY(shell->Connect(endpoint(kShellPort)));
  KILN_TRY(control->Connect(endpoint(kControlPort)));
  KILN_TRY(stdin_socket->Connect(endpoint(kStdinPort)));
  KILN_TRY(iopub->Connect(endpoint(kIopubPort)));
  return {};
}

void Kernel::State::StartWatchers(const std::shared_ptr<State>& self) {
  for (Channel ch : {Channel::kShell, Channel::kIopub, Channel::kStdin, Channel::kControl}) {
    net::co_spawn(executor, ReadLoop(self, ch), net::detached);
  }
  pidfd.async_wait(net::posix::descriptor_base::wait_read,
                   [self](const boost::system::error_code& ec) {
                     if (ec == net::error::operation_aborted) return;
                     self->OnProcessReadable(self);
                   });
}

http::Task<Status> Kernel::State::Handshake(std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  Clock::time_point next_send = Clock::now();
  while (!(info_reply && info_iopub)) {
    if (closed) co_return Fail(Errc::kUnavailable, "kernel closed during startup");
    if (!alive) {
      co_return Fail(Errc::kUnavailable,
                     "kernel exited during startup: " + DescribeWaitStatus(wait_status));
    }
    Clock::time_point now = Clock::now();
    if (now >= deadline) {
      co_return Fail(Errc::kTimeout, "kernel did not answer kernel_info_request within " +
                                         std::to_string(timeout.count()) + " ms");
    }
    if (now >= next_send) {
      Message request = MakeMessage("kernel_info_request", session, json::object());
      info_request_ids.emplace_back(request.msg_id());
      KILN_CO_TRY(SendShell(request));
      next_send = now + (info_reply ? kIopubRetry : kInfoRetry);
    } else if (info_reply && next_send > now + kIopubRetry) {
      next_send = now + kIopubRetry;
    }
    co_await WaitWake(std::min(next_send, deadline));
  }
  info_request_ids.clear();
  co_return Status();
}

Status Kernel::State::SendShell(const Message& message) {
  std::vector<std::string> frames = SerializeMessage(message, signer);
  Status sent = shell->Send(frames);
  if (!sent) return Unexpected(std::move(sent).error().Wrap("kernel: send on shell"));
  return {};
}

http::Task<void> Kernel::State::WaitWake(Clock::time_point deadline) {
  wake.expires_at(deadline);
  boost::system::error_code ec;
  co_await wake.async_wait(net::redirect_error(net::use_awaitable, ec));
}

ZmqSocket* Kernel::State::Socket(Channel ch) {
  switch (ch) {
    case Channel::kShell: return shell.get();
    case Channel::kIopub: return iopub.get();
    case Channel::kStdin: return stdin_socket.get();
    case Channel::kControl: return control.get();
  }
  return nullptr;
}

bool Kernel::State::Drain(Channel ch, size_t limit) {
  ZmqSocket* socket = Socket(ch);
  // Dispatch can run callbacks that Close() this state; TryReceive then fails.
  for (size_t n = 0; socket != nullptr && !socket->closed(); ++n) {
    if (n == limit) return true;
    Result<std::optional<Frames>> frames = socket->TryReceive();
    if (!frames || !*frames) return false;
    Result<Message> message = ParseMessage(std::move(**frames), signer);
    if (!message) {
      // SECURITY: frames from the kernel (the sandbox user) that fail the HMAC or do not
      // parse are dropped and counted, never trusted.
      if (message.error().code() == Errc::kUnauthenticated) {
        ++stats.bad_signature;
      } else {
        ++stats.malformed;
      }
      KILN_LOG(Debug, "kernel: dropped message", {"error", message.error().message()});
      continue;
    }
    Dispatch(ch, std::move(*message));
  }
  return false;
}

void Kernel::State::Dispatch(Channel ch, Message message) {
  switch (ch) {
    case Channel::kShell: return OnShell(std::move(message));
    case Channel::kIopub: return OnIopub(std::move(message));
    case Channel::kStdin:
    case Channel::kControl:
      // We send allow_stdin=false and nothing on control: whatever comes is stale.
      ++stats.unmatched;
      return;
  }
}

bool Kernel::State::IsInfoRequest(std::string_view id) const {
  return std::find(info_request_ids.begin(), info_request_ids.end(), id) !=
         info_request_ids.end();
}

void Kernel::State::OnShell(Message message) {
  std::string_view type = message.msg_type();
  std::string_view parent = message.parent_msg_id();
  if (exec && type == "execute_reply" && parent == exec->msg_id) {
    exec->reply = std::move(message.content);
    exec->next_probe = Clock::now() + kIdleProbePeriod;
    Wake();
    return;
  }
  if (type == "kernel_info_reply" && IsInfoRequest(parent)) {
    kernel_info = std::move(message.content);
    info_reply = true;
    Wake();
    return;
  }
  ++stats.unmatched;
}

void Kernel::State::OnIopub(Message message) {
  std::string_view type = message.msg_type();
  std::string_view parent = message.parent_msg_id();
  if (exec && parent == exec->msg_id) {
    if (type == "status") {
      if (StringField(message.content, "execution_state") == "idle") {
        exec->idle = true;
        exec->idle_at = Clock::now();
        Wake();
      }
      return;
    }
    exec->delivered_output = true;
    if (exec->on_output) exec->on_output(message);
    return;
  }
  if (exec && type == "status" &&
      std::find(exec->probe_ids.begin(), exec->probe_ids.end(), parent) !=
          exec->probe_ids.end()) {
    // iopub is ordered: the execution's idle, had it been sent, would have come first.
    exec->idle = true;
    exec->idle_at = Clock::now();
    Wake();
    return;
  }
  if (type == "status" && IsInfoRequest(parent)) {
    info_iopub = true;
    Wake();
    return;
  }
  ++stats.unmatched;
}

void Kernel::State::OnProcessReadable(const std::shared_ptr<State>& self) {
  if (closed || !alive) return;
  if (!KillGroupAndReap(/*block=*/false)) {
    // Not reapable yet (should not happen once the pidfd is readable): wait again.
    pidfd.async_wait(net::posix::descriptor_base::wait_read,
                     [self](const boost::system::error_code& ec) {
                       if (ec == net::error::operation_aborted) return;
                       self->OnProcessReadable(self);
                     });
    return;
  }
  // What the kernel published before it died may still be queued: hand it on first.
  Drain(Channel::kIopub, SIZE_MAX);
  Drain(Channel::kShell, SIZE_MAX);
  Wake();
  if (on_exit && !closed) {
    std::function<void(int)> fn = std::move(on_exit);
    fn(wait_status);  // may destroy the Kernel; `self` keeps this state alive
  }
}

bool Kernel::State::KillGroupAndReap(bool block) {
  if (!alive) return true;
  // SECURITY: the leader is not reaped yet, so `pid` still names the kernel's own group.
  kill(-pid, SIGKILL);
  siginfo_t info{};
  int rc;
  if (pidfd.is_open()) {
    for (;;) {
      rc = waitid(P_PIDFD, static_cast<id_t>(pidfd.native_handle()), &info,
                  WEXITED | (block ? 0 : WNOHANG));
      if (rc == 0) break;
      if (errno == EINTR) continue;
      if (errno != EAGAIN || !block) break;
      // Asio made the pidfd O_NONBLOCK, and waitid then fails with EAGAIN instead of
      // blocking: wait for the (SIGKILLed, so imminent) exit with poll.
      pollfd p{pidfd.native_handle(), POLLIN, 0};
      poll(&p, 1, -1);
    }
    if (rc < 0 && errno == EAGAIN) return false;     // not exited yet
    if (rc == 0 && info.si_pid == 0) return false;  // WNOHANG and not exited yet
    if (rc == 0) wait_status = WaitStatusFromSiginfo(info);
  } else {
    int status = 0;
    do {
      rc = waitpid(pid, &status, block ? 0 : WNOHANG);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) return false;
    if (rc > 0) wait_status = status;
  }
  // rc < 0 (ECHILD): someone else reaped it; it is gone either way.
  alive = false;
  return true;
}

bool Kernel::State::ExecutionComplete() const { return exec->reply && exec->idle; }

namespace {

// Stands in for an execute_reply the kernel never sent.
json MissingReply(bool interrupted) {
  return json{{"status", "error"},
              {"ename", interrupted ? "KeyboardInterrupt" : "KernelError"},
              {"evalue", interrupted ? "" : "the kernel sent no execute_reply"},
              {"traceback", json::array()}};
}

}  // namespace

Clock::time_point Kernel::State::CheckExecutionTimers() {
  Clock::time_point now = Clock::now();
  if (exec->idle && !exec->reply) {
    if (now < exec->idle_at + kMissingReplyGrace) return exec->idle_at + kMissingReplyGrace;
    KILN_LOG(Warn, "kernel: no execute_reply after idle", {"interrupted", exec->interrupted});
    exec->reply = MissingReply(exec->interrupted);
    return Clock::time_point::max();
  }
  if (exec->reply && !exec->idle) {
    if (now < exec->next_probe) return exec->next_probe;
    Message probe = MakeMessage("kernel_info_request", session, json::object());
    exec->probe_ids.emplace_back(probe.msg_id());
    exec->next_probe = now + kIdleProbePeriod;
    if (!SendShell(probe)) KILN_LOG(Warn, "kernel: cannot send idle probe");
    return exec->next_probe;
  }
  return Clock::time_point::max();
}

// ipykernel aborts every execute_request that it dequeues before a short "stop aborting"
// callback after an error with stop_on_error, and we are fast enough to land the next request
// in that window. We never queue a second request, so an "aborted" reply with no output can
// only come from that window: the code did not run and is sent again.
bool Kernel::State::ShouldRetryAborted(int attempt) const {
  constexpr int kMaxAbortRetries = 5;
  return ExecutionComplete() && !exec->delivered_output && attempt < kMaxAbortRetries &&
         StringField(*exec->reply, "status") == "aborted" && alive && !closed;
}

Result<ExecuteReply> Kernel::State::FinishExecution() {
  Execution done = std::move(*exec);
  exec.reset();
  if (done.reply && done.idle) {
    ExecuteReply reply;
    reply.status = std::string(StringField(*done.reply, "status"));
    auto count = done.reply->find("execution_count");
    if (count != done.reply->end() && count->is_number_integer()) {
      reply.execution_count = count->get<int64_t>();
    }
    reply.content = std::move(*done.reply);
    return reply;
  }
  if (closed) return Fail(Errc::kUnavailable, "kernel died: shut down");
  return Fail(Errc::kUnavailable, "kernel died: " + DescribeWaitStatus(wait_status));
}

void Kernel::State::Close() {
  if (closed) return;
  closed = true;
  KillGroupAndReap(/*block=*/true);
  // Closing the sockets ends the readers (their waits are aborted) and so releases their
  // references to this state.
  for (ZmqSocket* s : {shell.get(), iopub.get(), stdin_socket.get(), control.get()}) {
    if (s != nullptr) s->Close();
  }
  boost::system::error_code ec;
  pidfd.close(ec);
  wake.cancel();
  if (!dir.empty()) RemoveRuntimeDir(dir);
}

http::Task<Result<std::unique_ptr<Kernel>>> Kernel::Start(net::any_io_executor executor,
                                                          KernelLaunch launch) {
  auto state = std::make_shared<State>(executor);
  std::chrono::milliseconds timeout = launch.start_timeout;
  Status prepared = state->Prepare(launch);
  if (!prepared) {
    state->Close();
    co_return Unexpected(std::move(prepared).error().Wrap("start kernel"));
  }
  state->StartWatchers(state);
  Status ready = co_await state->Handshake(timeout);
  if (!ready) {
    state->Close();
    co_return Unexpected(std::move(ready).error().Wrap("start kernel"));
  }
  co_return std::unique_ptr<Kernel>(new Kernel(std::move(state)));
}

Kernel::Kernel(std::shared_ptr<State> state) : state_(std::move(state)) {}

Kernel::~Kernel() { state_->Close(); }

http::Task<Result<ExecuteReply>> Kernel::Execute(std::string code, ExecuteOptions options,
                                                 OutputFn on_output) {
  // The state, not `this`, is used from here on: the Kernel may be destroyed meanwhile.
  std::shared_ptr<State> s = state_;
  if (s->closed || !s->alive) {
    co_return Fail(Errc::kUnavailable, "kernel died: " + DescribeWaitStatus(s->wait_status));
  }
  if (s->exec) co_return Fail(Errc::kFailedPrecondition, "kernel: another execution is running");
  s->exec.emplace();
  s->exec->on_output = std::move(on_output);
  for (int attempt = 0;; ++attempt) {
    Message request = MakeMessage("execute_request", s->session, ExecuteContent(code, options));
    s->exec->msg_id = std::string(request.msg_id());
    s->exec->idle = false;
    s->exec->reply.reset();
    s->exec->probe_ids.clear();
    Status sent = s->SendShell(request);
    if (!sent) {
      s->exec.reset();
      co_return Unexpected(std::move(sent).error());
    }
    while (!s->ExecutionComplete() && s->alive && !s->closed) {
      Clock::time_point next = s->CheckExecutionTimers();
      if (s->ExecutionComplete()) break;
      co_await s->WaitWake(next);
    }
    if (!s->ShouldRetryAborted(attempt)) break;
  }
  co_return s->FinishExecution();
}

http::Task<Result<ExecuteReply>> Kernel::ExecuteSilent(std::string code) {
  ExecuteOptions options;
  options.silent = true;
  options.store_history = false;
  return Execute(std::move(code), options, nullptr);
}

Status Kernel::Interrupt() {
  if (state_->closed || !state_->alive) {
    return Fail(Errc::kUnavailable, "kernel died: " + DescribeWaitStatus(state_->wait_status));
  }
  // To the kernel's main thread (its tid is its pid): a process-directed SIGINT may be taken
  // by any of ipykernel's threads (IOPub, heartbeat, history), and then a blocking call in
  // the main thread (time.sleep) is not interrupted. The kernel passes the interrupt on to
  // what the cell started (IPython's `!`, the wrapper kernels' bash and node). The leader is
  // unreaped (alive), so the pid is still the kernel's.
  if (syscall(SYS_tgkill, state_->pid, state_->pid, SIGINT) < 0) {
    return FailErrno("tgkill -INT kernel");
  }
  if (state_->exec) state_->exec->interrupted = true;
  return {};
}

void Kernel::Kill() {
  state_->KillGroupAndReap(/*block=*/true);
  state_->Wake();
}

bool Kernel::alive() const { return state_->alive && !state_->closed; }
bool Kernel::busy() const { return state_->exec.has_value(); }
pid_t Kernel::pid() const { return state_->pid; }

std::string Kernel::exit_description() const {
  if (state_->alive) return {};
  return DescribeWaitStatus(state_->wait_status);
}

const json& Kernel::kernel_info() const { return state_->kernel_info; }
const std::string& Kernel::session() const { return state_->session; }
Kernel::Stats Kernel::stats() const { return state_->stats; }

void Kernel::set_on_exit(std::function<void(int wait_status)> on_exit) {
  state_->on_exit = std::move(on_exit);
}

}  // namespace kiln::interp
