#include "envd/sudo/sudo_session.h"

#include <signal.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace kiln::envd::sudo {
namespace net = boost::asio;

namespace {

// The policy's refusal as sudo words it: "bob is not in the sudoers file." has no prefix.
SudoReply DeniedReply(const Error& e) {
  if (e.code() != Errc::kPermissionDenied) return ErrorReply(e.message());
  SudoReply r;
  r.exit_code = 1;
  r.err = e.message() + "\n";
  return r;
}

SudoReply SpawnFailedReply(const std::string& path, const Error& e) {
  if (e.sys_errno() != 0) {
    return ErrorReply("unable to execute " + path + ": " + std::strerror(e.sys_errno()));
  }
  return ErrorReply(e.message());
}

}  // namespace

SudoSession::SudoSession(const SessionContext& ctx, Socket socket, DoneFn done)
    : ctx_(ctx), socket_(std::move(socket)), done_(std::move(done)), request_timer_(ctx.io) {}

void SudoSession::Start() {
  // SECURITY: who is asking comes from the kernel (credentials at connect time), never from
  // the request.
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    peer_uid_ = cred.uid;
    peer_gid_ = cred.gid;
    peer_known_ = true;
  }
  request_timer_.expires_after(ctx_.request_timeout);
  request_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->state_ != State::kReadingRequest) return;
    self->Finish(ErrorReply("timed out waiting for the request"));
  });
  WaitReadable();
}

void SudoSession::WaitReadable() {
  socket_.async_wait(Socket::wait_read,
                     [self = shared_from_this()](const boost::system::error_code& ec) {
                       if (ec || self->state_ == State::kDone) return;
                       self->OnReadable();
                     });
}

void SudoSession::OnReadable() {
  if (!ReceiveAvailable()) return;
  if (!HandleFrames()) return;
  WaitReadable();
}

bool SudoSession::ReceiveAvailable() {
  for (;;) {
    char buf[16384];
    iovec iov{buf, sizeof buf};
    // Room for the three standard descriptors; more than that is cut off (MSG_CTRUNC) and the
    // kernel closes the excess.
    alignas(cmsghdr) char control[CMSG_SPACE(3 * sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(socket_.native_handle(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); n >= 0 && c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        UniqueFd owned(fd);
        // Descriptors after the request are not wanted: closed here.
        if (state_ == State::kReadingRequest) fds_.push_back(std::move(owned));
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) fds_truncated_ = true;
    if (n <= 0) {
      OnClientGone();
      return false;
    }
    reader_.Append(std::string_view(buf, static_cast<size_t>(n)));
  }
}

bool SudoSession::HandleFrames() {
  for (;;) {
    auto frame = reader_.Next();
    if (!frame) {
      if (state_ == State::kReadingRequest) {
        Finish(ErrorReply(frame.error().message()));
      } else {
        OnClientGone();  // a client that breaks the protocol is treated as gone
      }
      return false;
    }
    if (!*frame) return true;
    if (state_ == State::kReadingRequest) {
      HandleRequest(**frame);
      if (state_ == State::kDone) return false;
      continue;
    }
    // Anything but a valid signal message is ignored.
    if (auto sig = ParseSignal(**frame); sig && running_) kill(-pid_, *sig);
  }
}

void SudoSession::HandleRequest(const std::string& payload) {
  request_timer_.cancel();
  reader_.set_max_payload(kMaxControlBytes);
  auto req = ParseRequest(payload);
  std::optional<SudoReply> reply;
  if (!req) {
    reply = ErrorReply(req.error().message());
  } else if (fds_truncated_ || static_cast<int>(fds_.size()) != req->attached_fds()) {
    reply = ErrorReply("malformed sudo message: the request announces " +
                       std::to_string(req->attached_fds()) + " descriptors, " +
                       std::to_string(fds_.size()) + " arrived");
  } else {
    reply = Launch(*req);
  }
  fds_.clear();  // the child has its copies; ours must not keep pipes open
  if (reply) Finish(*reply);
}

std::optional<SudoReply> SudoSession::Launch(const SudoRequest& req) {
  if (!peer_known_) return ErrorReply("cannot tell who is asking (SO_PEERCRED failed)");
  auto invoker = ctx_.policy.Authorize(peer_uid_);
  if (!invoker) return DeniedReply(invoker.error());
  if (req.list) {
    auto text = ListOutput(req, *invoker, ctx_.hostname);
    SudoReply reply;
    if (text) {
      reply.out = std::move(*text);
    } else {
      reply.exit_code = 1;  // sudo -l for a missing command: no output, status 1
    }
    return reply;
  }
  auto target = ctx_.policy.ResolveTarget(req.user, req.group, *invoker);
  if (!target) return ErrorReply(target.error().message());
  auto cmd = PlanSudoCommand(req, Invoker{*invoker, peer_gid_}, *target);
  if (!cmd) return ErrorReply(cmd.error().message());
  size_t next_fd = 0;
  int* stdio[3] = {&cmd->spawn.stdin_fd, &cmd->spawn.stdout_fd, &cmd->spawn.stderr_fd};
  for (int i = 0; i < 3; ++i) {
    if (req.stdio[i]) *stdio[i] = fds_[next_fd++].get();
  }
  auto pid = SpawnWithFallback(*cmd);
  if (!pid) return SpawnFailedReply(cmd->spawn.path, pid.error());
  pid_ = *pid;
  running_ = true;
  state_ = State::kRunning;
  // Registered before returning to the io_context, so the reaper cannot take the exit first.
  std::weak_ptr<SudoSession> weak = weak_from_this();
  ctx_.reaper.Watch(pid_, [weak](pid_t, int status) {
    if (auto self = weak.lock()) self->OnCommandExit(status);
  });
  KILN_LOG(Debug, "sudo", {"user", invoker->name}, {"as", target->name}, {"pid", pid_},
           {"cmd", log::Sanitize(cmd->spawn.path)});
  return std::nullopt;
}

Result<pid_t> SudoSession::SpawnWithFallback(SudoCommand& cmd) {
  auto pid = sys::Spawn(cmd.spawn);
  // kInvalidArgument: the target could not enter the directory (see sys::Spawn).
  for (const std::string& dir : cmd.fallback_cwds) {
    if (pid || pid.error().code() != Errc::kInvalidArgument) break;
    cmd.spawn.cwd = dir;
    pid = sys::Spawn(cmd.spawn);
  }
  return pid;
}

void SudoSession::OnCommandExit(int wait_status) {
  running_ = false;
  if (state_ == State::kDone) return;
  Finish(ReplyForWaitStatus(wait_status));
}

void SudoSession::OnClientGone() {
  if (state_ == State::kDone) return;
  if (running_) {
    // sudo's behaviour when its terminal goes away: the command gets a hangup.
    kill(-pid_, SIGHUP);
    ctx_.reaper.Unwatch(pid_);
    running_ = false;
  }
  Close();
  if (done_) done_(this);
}

void SudoSession::Finish(const SudoReply& reply) {
  if (state_ == State::kDone) return;
  // The only bytes ever written on this connection, far below the socket buffer: a
  // non-blocking send cannot be partial unless the client is gone (then nobody reads it).
  std::string frame = EncodeFrame(ReplyToJson(reply));
  [[maybe_unused]] ssize_t n =
      send(socket_.native_handle(), frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  Close();
  if (done_) done_(this);
}

void SudoSession::Abort() {
  if (running_) {
    kill(-pid_, SIGKILL);
    ctx_.reaper.Unwatch(pid_);
    running_ = false;
  }
  Close();
}

void SudoSession::Close() {
  state_ = State::kDone;
  request_timer_.cancel();
  fds_.clear();
  boost::system::error_code ignored;
  socket_.close(ignored);
}

}  // namespace kiln::envd::sudo
