#include "kilnd/runtime/vm/qemu_process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "kilnd/runtime/vm/run_sync.h"

namespace kiln::kilnd::vm {
namespace {

namespace asio = boost::asio;
using Json = nlohmann::json;

constexpr size_t kKeptStderr = 8192;

Result<UniqueFd> ListenUnix(const std::filesystem::path& path, uid_t uid, gid_t gid) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof addr.sun_path) {
    return Fail(Errc::kInvalidArgument, "socket path too long: " + path.string());
  }
  std::copy_n(path.string().c_str(), path.string().size() + 1, addr.sun_path);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return FailErrno("qmp socket");
  unlink(path.c_str());
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    return FailErrno("bind " + path.string());
  }
  if (uid != 0 && chown(path.c_str(), uid, gid) < 0) return FailErrno("chown " + path.string());
  if (listen(fd.get(), 1) < 0) return FailErrno("listen " + path.string());
  return fd;
}

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<long long>(left.count(), 0, 60000));
}

// Accepts QEMU's connection, or fails when QEMU exits or the deadline passes.
Result<UniqueFd> AcceptFrom(int listener, int pidfd, Clock::time_point deadline) {
  for (;;) {
    int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) return UniqueFd(fd);
    if (errno != EAGAIN && errno != EINTR) return FailErrno("accept qmp connection");
    pollfd p[2] = {{listener, POLLIN, 0}, {pidfd, POLLIN, 0}};
    int n = poll(p, 2, MillisLeft(deadline));
    if (n < 0 && errno != EINTR) return FailErrno("poll qmp socket");
    if (p[1].revents != 0) return Fail(Errc::kUnavailable, "qemu exited before connecting to qmp");
    if (n == 0 && Clock::now() >= deadline) {
      return Fail(Errc::kTimeout, "qemu did not connect to qmp in time");
    }
  }
}

}  // namespace

Result<std::unique_ptr<QemuProcess>> QemuProcess::Start(QemuLaunch launch) {
  std::unique_ptr<QemuProcess> q(new QemuProcess());
  q->timeout_ = launch.timeout;
  auto deadline = Clock::now() + launch.timeout;

  std::filesystem::path qmp_path = launch.run_dir / "qmp.sock";
  KILN_ASSIGN_OR_RETURN(UniqueFd listener, ListenUnix(qmp_path, launch.uid, launch.gid));
  launch.config.qmp_socket = qmp_path;
  launch.config.tap_fd = launch.tap_fd >= 0 ? 3 : -1;

  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return FailErrno("pipe2");
  UniqueFd err_r(p[0]), err_w(p[1]);
  // QEMU never blocks on its stderr (a guest can make devices complain): beyond the pipe's
  // buffer its messages are dropped.
  if (fcntl(err_w.get(), F_SETFL, O_NONBLOCK) < 0 || fcntl(err_r.get(), F_SETFL, O_NONBLOCK) < 0) {
    return FailErrno("fcntl O_NONBLOCK");
  }

  std::vector<std::string> argv = MicrovmArgv(launch.config);
  sys::SpawnSpec spec;
  spec.path = argv[0];
  spec.argv = std::move(argv);
  spec.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"};
  spec.stderr_fd = err_w.get();
  spec.uid = launch.uid;
  spec.gid = launch.gid;
  spec.netns_fd = launch.netns_fd;
  spec.unshare_flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  spec.no_new_privs = true;
  // QEMU advises huge pages for TCG's code cache, which fills a few KiB at a time: with them
  // an idle guest's cache costs whole 2 MiB pages.
  spec.no_huge_pages = true;
  spec.parent_death_signal = SIGKILL;
  if (launch.tap_fd >= 0) spec.inherit_fds = {launch.tap_fd};
  std::vector<UniqueFd> procs;
  if (launch.cgroup != nullptr) {
    KILN_ASSIGN_OR_RETURN(procs, launch.cgroup->OpenProcsFiles());
    for (const UniqueFd& fd : procs) spec.cgroup_procs_fds.push_back(fd.get());
  }
  KILN_ASSIGN_OR_RETURN(q->child_, ChildProcess::Start(spec));
  err_w.reset();
  q->stderr_ = std::move(err_r);

  auto accepted = AcceptFrom(listener.get(), q->child_.pidfd(), deadline);
  unlink(qmp_path.c_str());
  if (!accepted) return Unexpected(q->Failure(std::move(accepted).error()));
  QmpClient::Socket socket(q->io_);
  boost::system::error_code ec;
  socket.assign(asio::local::stream_protocol(), accepted->get(), ec);
  if (ec) return Fail(Errc::kInternal, "adopt qmp socket: " + ec.message());
  (void)accepted->release();
  auto client = RunSync(q->io_, QmpClient::Handshake(std::move(socket), launch.timeout));
  if (!client) return Unexpected(q->Failure(std::move(client).error()));
  q->qmp_ = std::move(*client);
  return q;
}

QemuProcess::~QemuProcess() { Kill(); }

std::string QemuProcess::Stderr() {
  if (stderr_) {
    char buf[4096];
    ssize_t n;
    while ((n = read(stderr_.get(), buf, sizeof buf)) > 0) {
      stderr_text_.append(buf, static_cast<size_t>(n));
      if (stderr_text_.size() > 2 * kKeptStderr) {
        stderr_text_.erase(0, stderr_text_.size() - kKeptStderr);
      }
    }
  }
  std::string text = stderr_text_.size() > kKeptStderr
                         ? stderr_text_.substr(stderr_text_.size() - kKeptStderr)
                         : stderr_text_;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

Error QemuProcess::Failure(Error e) {
  std::string msg = e.message();
  pollfd p{child_.pidfd(), POLLIN, 0};
  if (child_.running() && poll(&p, 1, 0) == 1) {
    auto status = child_.Wait(Clock::now() + std::chrono::seconds(1));
    if (status) msg = "qemu " + DescribeWaitStatus(*status);
  }
  std::string err = Stderr();
  if (!err.empty()) msg += ": " + err;
  return Error(e.code(), msg);
}

Result<Json> QemuProcess::Execute(const std::string& command, const Json& arguments) {
  if (!qmp_) return Fail(Errc::kFailedPrecondition, "qemu is gone");
  auto r = RunSync(io_, qmp_->Execute(command, arguments, timeout_));
  if (!r) return Unexpected(Failure(std::move(r).error()));
  return r;
}

Status QemuProcess::SendFd(const std::string& name, int fd) {
  if (!qmp_) return Fail(Errc::kFailedPrecondition, "qemu is gone");
  auto r = RunSync(io_, qmp_->SendFd(name, fd, timeout_));
  if (!r) return Unexpected(Failure(std::move(r).error()));
  return {};
}

Status QemuProcess::WaitMigration(std::chrono::milliseconds timeout) {
  if (!qmp_) return Fail(Errc::kFailedPrecondition, "qemu is gone");
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Fail(Errc::kTimeout, "migration did not complete in time");
    auto ev = RunSync(io_, qmp_->NextEvent(left));
    if (!ev) return Unexpected(Failure(std::move(ev).error().Wrap("migration")));
    if (ev->value("event", "") != "MIGRATION") continue;
    std::string status = (*ev)["data"].value("status", "");
    if (status == "completed") return {};
    if (status == "failed" || status == "cancelled") {
      std::string why = status;
      if (auto info = Execute("query-migrate"); info && info->contains("error-desc")) {
        why += ": " + (*info)["error-desc"].get<std::string>();
      }
      return Unexpected(Failure(Error(Errc::kInternal, "migration " + why)));
    }
  }
}

Result<std::string> QemuProcess::RunState() {
  KILN_ASSIGN_OR_RETURN(Json st, Execute("query-status"));
  if (!st.is_object() || !st.contains("status") || !st["status"].is_string()) {
    return Fail(Errc::kInternal, "query-status: unexpected reply " + st.dump());
  }
  return st["status"].get<std::string>();
}

Status QemuProcess::Quit() {
  if (qmp_) {
    (void)RunSync(io_, qmp_->Execute("quit", Json(), timeout_));  // QEMU hangs up: kUnavailable
    qmp_->Close();
    qmp_.reset();
  }
  if (!child_.running()) return {};
  auto status = child_.Wait(Clock::now() + timeout_);
  if (!status) {
    child_.Kill();
    return Unexpected(std::move(status).error().Wrap("qemu quit"));
  }
  return {};
}

void QemuProcess::Kill() {
  if (qmp_) {
    qmp_->Close();
    qmp_.reset();
  }
  child_.Kill();
}

}  // namespace kiln::kilnd::vm
