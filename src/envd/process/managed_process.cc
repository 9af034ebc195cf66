#include "envd/process/managed_process.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cctype>

#include "sys/pty.h"

namespace kiln::envd {
namespace net = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kPipeChunk = 32 * 1024;
constexpr size_t kPtyChunk = 16 * 1024;
// What a reader still takes from its descriptor, without waiting, when the grace period
// ends; bounded because a grandchild may write without pause.
constexpr size_t kFinalDrainLimit = 1024 * 1024;

// Go's wording for a signal (envd's status strings come from Go's ProcessState.String()):
// the C library's description with a lower-case first letter, "killed", "terminated".
std::string SignalText(int sig) {
  std::string text = strsignal(sig);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

// A pipe whose agent-side end (`ours_read` says which) is non-blocking; both close-on-exec.
Result<Pipe> MakePipe(bool ours_read) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return FailErrno("pipe2");
  Pipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
  int ours = ours_read ? p.read.get() : p.write.get();
  if (fcntl(ours, F_SETFL, O_NONBLOCK) < 0) return FailErrno("fcntl O_NONBLOCK");
  return p;
}

}  // namespace

wire::EndEvent EndEventFromWaitStatus(int st) {
  wire::EndEvent end;
  if (WIFEXITED(st)) {
    end.exited = true;
    end.exit_code = WEXITSTATUS(st);
    end.status = "exit status " + std::to_string(end.exit_code);
  } else if (WIFSIGNALED(st)) {
    end.exit_code = -1;
    end.status = "signal: " + SignalText(WTERMSIG(st));
    if (WCOREDUMP(st)) end.status += " (core dumped)";
  } else {
    end.exit_code = -1;
    end.status = "unknown wait status " + std::to_string(st);
  }
  if (!end.exited || end.exit_code != 0) end.error = end.status;
  return end;
}

// --- Subscriber ---

Subscriber::Subscriber(net::io_context& io) : wake_(io) {}

void Subscriber::Push(std::shared_ptr<const ProcessEvent> ev) {
  if (overflowed_) return;
  queued_bytes_ += ev->data.size();
  if (queued_bytes_ > kMaxQueuedBytes) {
    overflowed_ = true;
    queue_.clear();
    queued_bytes_ = 0;
  } else {
    queue_.push_back(std::move(ev));
  }
  wake_.cancel();
}

std::shared_ptr<const ProcessEvent> Subscriber::Pop() {
  if (queue_.empty()) return nullptr;
  std::shared_ptr<const ProcessEvent> ev = std::move(queue_.front());
  queue_.pop_front();
  queued_bytes_ -= ev->data.size();
  return ev;
}

http::Task<void> Subscriber::WaitUntil(Clock::time_point until) {
  if (!queue_.empty() || overflowed_) co_return;
  wake_.expires_at(until);
  error_code ec;
  co_await wake_.async_wait(net::redirect_error(net::use_awaitable, ec));
}

// --- ManagedProcess ---

std::shared_ptr<ManagedProcess> ManagedProcess::Adopt(net::io_context& io, pid_t pid,
                                                      wire::ProcessConfig config,
                                                      std::optional<std::string> tag, Fds fds) {
  auto proc = std::make_shared<ManagedProcess>(io, pid, std::move(config), std::move(tag),
                                               std::move(fds));
  proc->StartReaders();
  return proc;
}

ManagedProcess::ManagedProcess(net::io_context& io, pid_t pid, wire::ProcessConfig config,
                               std::optional<std::string> tag, Fds fds)
    : io_(io),
      pid_(pid),
      config_(std::move(config)),
      tag_(std::move(tag)),
      input_turn_(io, Clock::time_point::max()),
      drain_timer_(io),
      deadline_timer_(io) {
  if (fds.stdin_w) stdin_.emplace(io, fds.stdin_w.release());
  if (fds.stdout_r) stdout_.emplace(io, fds.stdout_r.release());
  if (fds.stderr_r) stderr_.emplace(io, fds.stderr_r.release());
  if (fds.pty_master) pty_.emplace(io, fds.pty_master.release());
}

ManagedProcess::~ManagedProcess() = default;

wire::ProcessInfo ManagedProcess::info() const {
  return wire::ProcessInfo{config_, static_cast<uint32_t>(pid_), tag_};
}

void ManagedProcess::StartReaders() {
  auto start = [this](Descriptor& fd, wire::OutputKind kind) {
    ++open_readers_;
    net::co_spawn(io_, ReadLoop(fd, kind), [self = shared_from_this()](std::exception_ptr) {});
  };
  if (stdout_) start(*stdout_, wire::OutputKind::kStdout);
  if (stderr_) start(*stderr_, wire::OutputKind::kStderr);
  if (pty_) start(*pty_, wire::OutputKind::kPty);
}

http::Task<void> ManagedProcess::ReadLoop(Descriptor& fd, wire::OutputKind kind) {
  std::string buf(kind == wire::OutputKind::kPty ? kPtyChunk : kPipeChunk, '\0');
  for (;;) {
    error_code ec;
    size_t n = co_await fd.async_read_some(net::buffer(buf),
                                           net::redirect_error(net::use_awaitable, ec));
    if (n > 0) PublishData(kind, buf.substr(0, n));
    // EOF; EIO from a PTY whose slave side is closed everywhere; StopReading (a read that
    // completed just before it was not cancelled, so the flag is checked too).
    if (ec || draining_) break;
  }
  if (draining_ && fd.is_open()) {
    // Take what is buffered now, without waiting for more.
    size_t total = 0;
    while (total < kFinalDrainLimit) {
      ssize_t n = ::read(fd.native_handle(), buf.data(), buf.size());
      if (n <= 0) break;
      total += static_cast<size_t>(n);
      PublishData(kind, buf.substr(0, static_cast<size_t>(n)));
    }
  }
  --open_readers_;
  MaybeFinish();
}

void ManagedProcess::PublishData(wire::OutputKind kind, std::string data) {
  if (end_) return;
  auto ev = std::make_shared<ProcessEvent>();
  ev->kind = kind;
  ev->data = std::move(data);
  Broadcast(std::move(ev));
}

void ManagedProcess::Broadcast(std::shared_ptr<const ProcessEvent> ev) {
  std::erase_if(subscribers_, [&](const std::weak_ptr<Subscriber>& w) {
    std::shared_ptr<Subscriber> sub = w.lock();
    if (!sub) return true;
    sub->Push(ev);
    return false;
  });
}

void ManagedProcess::OnExit(int wait_status) {
  if (wait_status_) return;
  wait_status_ = wait_status;
  deadline_timer_.cancel();
  if (open_readers_ > 0) {
    drain_timer_.expires_after(kDrainGrace);
    drain_timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
      auto self = weak.lock();
      if (!ec && self) self->StopReading();
    });
  }
  MaybeFinish();
}

void ManagedProcess::StopReading() {
  draining_ = true;
  error_code ignored;
  // Completes pending reads with operation_aborted; a read that already has data delivers
  // it first, so the order of the output is kept.
  if (stdout_) stdout_->cancel(ignored);
  if (stderr_) stderr_->cancel(ignored);
  if (pty_) pty_->cancel(ignored);
}

void ManagedProcess::MaybeFinish() {
  if (end_ || !wait_status_ || open_readers_ > 0) return;
  drain_timer_.cancel();
  end_ = EndEventFromWaitStatus(*wait_status_);
  finished_at_ = Clock::now();
  error_code ignored;
  for (auto* d : {&stdin_, &stdout_, &stderr_, &pty_}) {
    if (*d) (*d)->close(ignored);
  }
  auto ev = std::make_shared<ProcessEvent>();
  ev->end = *end_;
  Broadcast(std::move(ev));
  subscribers_.clear();
}

void ManagedProcess::KillAt(Clock::time_point deadline) {
  deadline_timer_.expires_at(deadline);
  deadline_timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->exited()) return;
    self->timed_out_ = true;
    (void)self->Signal(SIGKILL);
  });
}

std::shared_ptr<Subscriber> ManagedProcess::Subscribe() {
  auto sub = std::make_shared<Subscriber>(io_);
  if (end_) {
    auto ev = std::make_shared<ProcessEvent>();
    ev->end = *end_;
    sub->Push(std::move(ev));
  } else {
    subscribers_.push_back(sub);
  }
  return sub;
}

ManagedProcess::Descriptor* ManagedProcess::InputDescriptor(wire::InputKind kind,
                                                           std::string* why) {
  std::string who = "process " + std::to_string(pid_);
  if (end_ || wait_status_) {
    *why = who + " has exited";
    return nullptr;
  }
  if (pty_) return pty_->is_open() ? &*pty_ : nullptr;
  if (kind == wire::InputKind::kPty) {
    *why = who + " has no pty";
    return nullptr;
  }
  if (!stdin_ || !stdin_->is_open()) {
    *why = "stdin of " + who + " was not requested or is closed";
    return nullptr;
  }
  return &*stdin_;
}

http::Task<Status> ManagedProcess::WriteInput(wire::ProcessInput input) {
  auto self = shared_from_this();
  while (writing_) {
    error_code ec;
    co_await input_turn_.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
  std::string why;
  Descriptor* fd = InputDescriptor(input.kind, &why);
  if (!fd) co_return Fail(Errc::kFailedPrecondition, why);
  writing_ = true;
  error_code ec;
  co_await net::async_write(*fd, net::buffer(input.data),
                            net::redirect_error(net::use_awaitable, ec));
  writing_ = false;
  input_turn_.cancel();
  if (ec) co_return Fail(Errc::kFailedPrecondition, "write input: " + ec.message());
  co_return Status();
}

Status ManagedProcess::CloseStdin() {
  if (pty_) return Fail(Errc::kFailedPrecondition, "a pty process has no stdin pipe to close");
  if (wait_status_) return Fail(Errc::kNotFound, "process " + std::to_string(pid_) + " has exited");
  error_code ignored;
  if (stdin_) stdin_->close(ignored);
  return Status();
}

Status ManagedProcess::Resize(wire::PtySize size) {
  if (!pty_ || !pty_->is_open()) {
    return Fail(Errc::kFailedPrecondition, "process " + std::to_string(pid_) + " has no pty");
  }
  return sys::ResizePty(pty_->native_handle(), size.cols, size.rows);
}

Status ManagedProcess::Signal(int sig) {
  if (wait_status_) return Fail(Errc::kNotFound, "process " + std::to_string(pid_) + " has exited");
  // The child leads its own process group (or session), so this reaches what it started.
  if (kill(-pid_, sig) == 0 || kill(pid_, sig) == 0) return Status();
  return FailErrno("kill " + std::to_string(pid_));
}

Result<std::shared_ptr<ManagedProcess>> LaunchProcess(net::io_context& io, LaunchSpec spec) {
  ManagedProcess::Fds fds;
  sys::SpawnSpec& s = spec.spawn;
  pid_t pid;
  if (spec.pty) {
    KILN_ASSIGN_OR_RETURN(sys::PtyPair pty, sys::OpenPty(spec.pty->cols, spec.pty->rows));
    // The terminal belongs to the user who runs in it (tty(1), mesg, reopening by name).
    if (geteuid() == 0) (void)fchown(pty.slave.get(), s.uid, static_cast<gid_t>(-1));
    s.stdin_fd = s.stdout_fd = s.stderr_fd = pty.slave.get();
    s.new_session = true;
    KILN_ASSIGN_OR_RETURN(pid, sys::Spawn(s));
    fds.pty_master = std::move(pty.master);
  } else {
    KILN_ASSIGN_OR_RETURN(Pipe out, MakePipe(/*ours_read=*/true));
    KILN_ASSIGN_OR_RETURN(Pipe err, MakePipe(/*ours_read=*/true));
    std::optional<Pipe> in;
    if (spec.stdin_pipe) {
      KILN_ASSIGN_OR_RETURN(in, MakePipe(/*ours_read=*/false));
      s.stdin_fd = in->read.get();
    }
    s.stdout_fd = out.write.get();
    s.stderr_fd = err.write.get();
    KILN_ASSIGN_OR_RETURN(pid, sys::Spawn(s));
    fds.stdout_r = std::move(out.read);
    fds.stderr_r = std::move(err.read);
    if (in) fds.stdin_w = std::move(in->write);
  }
  return ManagedProcess::Adopt(io, pid, std::move(spec.config), std::move(spec.tag),
                               std::move(fds));
}

}  // namespace kiln::envd
