#include "envd/sudo/sudo_client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "base/unique_fd.h"
#include "envd/sudo/sudo_env.h"

extern char** environ;

namespace kiln::envd::sudo {
namespace {

constexpr int kForwardedSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR1, SIGUSR2};

void WriteAll(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<size_t>(n));
  }
}

int Complain(std::string_view message) {
  std::string line = "sudo: ";
  line.append(message).append("\n");
  WriteAll(2, line);
  return 1;
}

std::vector<std::string> CurrentEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  return env;
}

std::string CurrentDirectory() {
  char buf[PATH_MAX];
  if (getcwd(buf, sizeof buf) == nullptr) return "";
  return buf;
}

Result<UniqueFd> Connect(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return Fail(Errc::kInvalidArgument, "path too long");
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return FailErrno("socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int rc;
  do {
    rc = connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return FailErrno("connect " + path);
  return fd;
}

// Sends the framed request with the open standard descriptors attached to its first bytes.
Status SendRequest(int sock, const std::string& frame, const SudoRequest& req) {
  int fds[3];
  int nfds = 0;
  for (int i = 0; i < 3; ++i) {
    if (req.stdio[i]) fds[nfds++] = i;
  }
  alignas(cmsghdr) char control[CMSG_SPACE(3 * sizeof(int))] = {};
  size_t sent = 0;
  while (sent < frame.size()) {
    iovec iov{const_cast<char*>(frame.data() + sent), frame.size() - sent};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (sent == 0 && nfds > 0) {
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
      std::memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("send the request");
    sent += static_cast<size_t>(n);
  }
  return {};
}

// Forwards one pending signal from the signalfd; the connection's failures show up as EOF.
void ForwardSignal(int sfd, int sock) {
  signalfd_siginfo info{};
  if (read(sfd, &info, sizeof info) != static_cast<ssize_t>(sizeof info)) return;
  std::string frame = EncodeFrame(SignalToJson(static_cast<int>(info.ssi_signo)));
  [[maybe_unused]] ssize_t n = send(sock, frame.data(), frame.size(), MSG_NOSIGNAL);
}

// Waits for the reply, forwarding signals meanwhile.
Result<SudoReply> AwaitReply(int sock, int sfd) {
  FrameReader reader(kMaxControlBytes);
  for (;;) {
    pollfd pfds[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (poll(pfds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return FailErrno("poll");
    }
    if (pfds[1].revents & POLLIN) ForwardSignal(sfd, sock);
    if (!(pfds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    char buf[4096];
    ssize_t n = read(sock, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Fail(Errc::kUnavailable, "lost the connection to kiln-envd");
    reader.Append(std::string_view(buf, static_cast<size_t>(n)));
    KILN_ASSIGN_OR_RETURN(auto frame, reader.Next());
    if (frame) return ParseReply(*frame);
  }
}

// Blocks the forwarded signals and returns a signalfd for them.
Result<UniqueFd> SignalsToFd() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kForwardedSignals) sigaddset(&set, sig);
  if (sigprocmask(SIG_BLOCK, &set, nullptr) < 0) return FailErrno("sigprocmask");
  UniqueFd sfd(signalfd(-1, &set, SFD_CLOEXEC));
  if (!sfd) return FailErrno("signalfd");
  return sfd;
}

int RunRemote(const SudoOptions& opts, const SudoClientConfig& config) {
  const char* shell = getenv("SHELL");
  SudoRequest req =
      BuildRequest(opts, CurrentEnvironment(), CurrentDirectory(), shell != nullptr ? shell : "");
  for (int i = 0; i < 3; ++i) req.stdio[i] = fcntl(i, F_GETFD) >= 0;
  std::string payload = RequestToJson(req);
  if (payload.size() > kMaxRequestBytes) {
    return Complain("the command line and environment are too large (more than 1 MiB)");
  }
  // Blocked before connecting: a ^C from now on reaches the command once it runs.
  auto sfd = SignalsToFd();
  if (!sfd) return Complain(sfd.error().message());
  auto sock = Connect(config.socket_path);
  if (!sock) {
    return Complain("cannot reach kiln-envd (" + sock.error().message() +
                    "); sudo works only inside a kiln sandbox");
  }
  if (auto st = SendRequest(sock->get(), EncodeFrame(payload), req); !st) {
    return Complain(st.error().message());
  }
  auto reply = AwaitReply(sock->get(), sfd->get());
  if (!reply) return Complain(reply.error().message());
  WriteAll(1, reply->out);
  WriteAll(2, reply->err);
  return reply->ClientExitStatus();
}

}  // namespace

SudoRequest BuildRequest(const SudoOptions& opts, const std::vector<std::string>& invoker_env,
                         std::string cwd, std::string shell) {
  SudoRequest req;
  req.argv = opts.command;
  req.env = FilterInvokerEnv(invoker_env, opts.preserve_env, opts.preserve_names);
  req.assignments = opts.assignments;
  req.preserve_names = opts.preserve_names;
  req.cwd = std::move(cwd);
  req.invoker_shell = std::move(shell);
  req.user = opts.user;
  req.group = opts.group;
  req.login = opts.login;
  req.shell = opts.shell;
  req.set_home = opts.set_home;
  req.preserve_env = opts.preserve_env;
  req.list = opts.action == SudoAction::kList;
  return req;
}

int RunSudoClient(const std::vector<std::string>& args, const SudoClientConfig& config) {
  auto opts = ParseSudoArgs(args);
  if (!opts) {
    if (!opts.error().message().empty()) Complain(opts.error().message());
    WriteAll(2, SudoUsage());
    return 1;
  }
  switch (opts->action) {
    case SudoAction::kHelp:
      WriteAll(1,
               "sudo - execute a command as another user (served by kiln-envd)\n\n" + SudoUsage());
      return 0;
    case SudoAction::kVersion:
      WriteAll(1, "Sudo version 1.9 compatible subset (kiln-envd " + config.agent_version + ")\n");
      return 0;
    case SudoAction::kNoop:
      return 0;
    case SudoAction::kRun:
    case SudoAction::kList:
      break;
  }
  return RunRemote(*opts, config);
}

}  // namespace kiln::envd::sudo
