#include "envd/sudo/sudo_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "base/log.h"
#include "base/unique_fd.h"

namespace kiln::envd::sudo {
namespace net = boost::asio;

namespace {

std::string Hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

// Creates the listening socket at `path`: parent directory made if missing (0755), a stale
// socket (or other non-directory) removed first, mode 0666 so that every user can ask.
Result<std::pair<UniqueFd, ino_t>> ListenAt(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Fail(Errc::kInvalidArgument, "sudo socket path '" + path + "' is empty or too long");
  }
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) return Fail(Errc::kInternal, "create " + parent.string() + ": " + ec.message());
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode) && unlink(path.c_str()) < 0) {
    return FailErrno("remove stale " + path);
  }
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return FailErrno("socket(AF_UNIX)");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    return FailErrno("bind " + path);
  }
  if (chmod(path.c_str(), 0666) < 0) return FailErrno("chmod " + path);
  if (listen(fd.get(), 64) < 0) return FailErrno("listen " + path);
  if (lstat(path.c_str(), &st) < 0) return FailErrno("stat " + path);
  return std::pair{std::move(fd), st.st_ino};
}

}  // namespace

SudoServer::SudoServer(net::io_context& io, ChildReaper& reaper, SudoServerOptions options)
    : io_(io),
      options_(std::move(options)),
      policy_(options_.root),
      context_{io, reaper, policy_, Hostname(), options_.request_timeout},
      acceptor_(io),
      retry_timer_(io) {}

Result<std::unique_ptr<SudoServer>> SudoServer::Start(net::io_context& io, ChildReaper& reaper,
                                                      SudoServerOptions options) {
  std::unique_ptr<SudoServer> server(new SudoServer(io, reaper, std::move(options)));
  KILN_ASSIGN_OR_RETURN(auto listening, ListenAt(server->options_.socket_path));
  boost::system::error_code ec;
  server->acceptor_.assign(net::local::stream_protocol(), listening.first.get(), ec);
  if (ec) return Fail(Errc::kInternal, "sudo socket: " + ec.message());
  (void)listening.first.release();  // the acceptor owns it now
  server->socket_inode_ = listening.second;
  server->Accept();
  return server;
}

SudoServer::~SudoServer() {
  *alive_ = false;
  for (auto& [raw, session] : sessions_) session->Abort();
  sessions_.clear();
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  // Only our own socket: another agent may have replaced it in the meantime.
  struct stat st;
  if (lstat(options_.socket_path.c_str(), &st) == 0 && st.st_ino == socket_inode_) {
    unlink(options_.socket_path.c_str());
  }
}

void SudoServer::Accept() {
  std::weak_ptr<bool> alive = alive_;
  acceptor_.async_accept(
      [this, alive](const boost::system::error_code& ec, SudoSession::Socket socket) {
        auto live = alive.lock();
        if (!live || !*live || ec == net::error::operation_aborted) return;
        if (ec) {
          // EMFILE and the like: try again shortly instead of spinning.
          KILN_LOG(Warn, "sudo socket accept failed", {"error", ec.message()});
          retry_timer_.expires_after(std::chrono::milliseconds(100));
          retry_timer_.async_wait([this, alive](const boost::system::error_code& tec) {
            auto again = alive.lock();
            if (!tec && again && *again) Accept();
          });
          return;
        }
        OnAccepted(std::move(socket));
        Accept();
      });
}

void SudoServer::OnAccepted(SudoSession::Socket socket) {
  if (sessions_.size() >= options_.max_sessions) {
    std::string frame =
        EncodeFrame(ReplyToJson(ErrorReply("too many sudo commands running at once (at most " +
                                           std::to_string(options_.max_sessions) + ")")));
    [[maybe_unused]] ssize_t n =
        send(socket.native_handle(), frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    return;  // the socket closes here
  }
  std::weak_ptr<bool> alive = alive_;
  auto session =
      std::make_shared<SudoSession>(context_, std::move(socket), [this, alive](SudoSession* done) {
        auto live = alive.lock();
        if (live && *live) sessions_.erase(done);
      });
  sessions_[session.get()] = session;
  session->Start();
}

}  // namespace kiln::envd::sudo
