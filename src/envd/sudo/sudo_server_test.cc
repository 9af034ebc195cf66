#include "envd/sudo/sudo_server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

namespace kiln::envd::sudo {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr auto kWait = std::chrono::seconds(10);

struct Pipe {
  UniqueFd r, w;
  static Pipe Make() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
  }
};

int MsLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Everything `fd` delivers until EOF (or the deadline: then what came so far).
std::string ReadToEof(int fd, Clock::time_point deadline = Clock::now() + kWait) {
  std::string out;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    // SIGCHLD (the reaper's handler) may land on this thread: EINTR is no answer.
    int ready = poll(&p, 1, MsLeft(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      ADD_FAILURE() << "no EOF before the deadline; got '" << out << "'";
      return out;
    }
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// One line from a pipe (retrying EINTR), for "the command has started" handshakes.
std::string ReadLine(int fd) {
  std::string line;
  char c;
  for (;;) {
    ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return line;
    line += c;
    if (c == '\n') return line;
  }
}

// A connected client speaking the protocol by hand.
class Client {
 public:
  explicit Client(const std::string& path) {
    fd_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
        << std::strerror(errno);
  }

  void SendRaw(std::string_view bytes, const std::vector<int>& fds = {}) {
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(8 * sizeof(int))] = {};
    if (!fds.empty()) {
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
      std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
    }
    ASSERT_EQ(sendmsg(fd_.get(), &msg, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }

  // The request with stdin/stdout/stderr as given (-1: not attached).
  void Send(SudoRequest req, int in, int out, int err) {
    std::vector<int> fds;
    const int stdio[3] = {in, out, err};
    for (int i = 0; i < 3; ++i) {
      req.stdio[i] = stdio[i] >= 0;
      if (stdio[i] >= 0) fds.push_back(stdio[i]);
    }
    SendRaw(EncodeFrame(RequestToJson(req)), fds);
  }

  void Signal(int sig) { SendRaw(EncodeFrame(SignalToJson(sig))); }

  SudoReply Reply() {
    std::string bytes = ReadToEof(fd_.get());
    FrameReader reader(kMaxControlBytes);
    reader.Append(bytes);
    auto frame = reader.Next();
    if (!frame || !*frame) {
      ADD_FAILURE() << "no reply frame in " << bytes.size() << " bytes";
      return SudoReply{.exit_code = -1, .signal = 0, .out = "", .err = ""};
    }
    auto reply = ParseReply(**frame);
    EXPECT_TRUE(reply) << reply.error().message();
    return reply ? *reply : SudoReply{};
  }

  void Close() { fd_.reset(); }

 private:
  UniqueFd fd_;
};

SudoRequest Command(std::vector<std::string> argv) {
  SudoRequest req;
  req.argv = std::move(argv);
  req.cwd = "/";
  return req;
}

// A server on a socket in a temp dir, its io_context on a thread of its own, and account
// files in which the test's own user may use sudo.
class SudoServerTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-sudo-server-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "etc");
    fs::create_directories(dir_ / "home");
    uid_t uid = geteuid();
    name_ = uid == 0 ? "root" : "tester";
    std::ofstream(dir_ / "etc/passwd") << name_ << ":x:" << uid << ":" << getegid()
                                       << "::" << (dir_ / "home").string() << ":/bin/sh\n"
                                       << "bob:x:1001:1001::/home/bob:/bin/sh\n";
    // The default target; as non-root the command keeps the test's identity anyway.
    if (uid != 0)
      std::ofstream(dir_ / "etc/passwd", std::ios::app)
          << "root:x:0:0::" << (dir_ / "home").string() << ":/bin/sh\n";
    std::ofstream(dir_ / "etc/group") << "sudo:x:27:" << name_ << "\nbob:x:1001:\n";
  }

  void StartServer(size_t max_sessions = 64,
                   std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    SudoServerOptions options;
    options.socket_path = (dir_ / "run/sub/sudo.sock").string();
    options.root = dir_.string();
    options.max_sessions = max_sessions;
    options.request_timeout = timeout;
    auto server = SudoServer::Start(io_, reaper_, options);
    ASSERT_TRUE(server) << server.error().message();
    server_ = std::move(*server);
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    io_.stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::string socket_path() const { return (dir_ / "run/sub/sudo.sock").string(); }

  fs::path dir_;
  std::string name_;
  boost::asio::io_context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      io_.get_executor()};
  ChildReaper reaper_{io_, [](pid_t, int) {}};
  std::unique_ptr<SudoServer> server_;
  std::thread thread_;
};

TEST_F(SudoServerTest, SocketIsCreatedWorldWritableReplacingAStaleOne) {
  fs::create_directories(dir_ / "run/sub");
  std::ofstream(dir_ / "run/sub/sudo.sock") << "stale";
  StartServer();
  struct stat st {};
  ASSERT_EQ(lstat(socket_path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0666u);
}

TEST_F(SudoServerTest, RunsTheCommandOnTheClientsDescriptors) {
  StartServer();
  Pipe in = Pipe::Make(), out = Pipe::Make(), err = Pipe::Make();
  Client c(socket_path());
  c.Send(Command({"sh", "-c", "read x; echo out:$x; echo oops >&2; exit 7"}), in.r.get(),
         out.w.get(), err.w.get());
  in.r.reset();
  out.w.reset();
  err.w.reset();
  ASSERT_EQ(write(in.w.get(), "hi\n", 3), 3);
  in.w.reset();
  SudoReply reply = c.Reply();
  EXPECT_EQ(reply.exit_code, 7);
  EXPECT_EQ(reply.signal, 0);
  EXPECT_EQ(ReadToEof(out.r.get()), "out:hi\n");
  EXPECT_EQ(ReadToEof(err.r.get()), "oops\n");
}

TEST_F(SudoServerTest, EnvironmentAndDirectory) {
  StartServer();
  Pipe out = Pipe::Make();
  Client c(socket_path());
  SudoRequest req = Command({"sh", "-c", "echo $SUDO_USER:$USER:$PWD:$FOO:$SECRET"});
  req.cwd = "/tmp";
  req.env = {"SECRET=x", "TERM=dumb"};
  req.assignments = {"FOO=bar"};
  c.Send(req, -1, out.w.get(), -1);
  out.w.reset();
  EXPECT_EQ(c.Reply().exit_code, 0);
  EXPECT_EQ(ReadToEof(out.r.get()), name_ + ":root:/tmp:bar:\n");
}

TEST_F(SudoServerTest, UnusableDirectoryFallsBackToTheTargetsHome) {
  StartServer();
  Pipe out = Pipe::Make();
  Client c(socket_path());
  SudoRequest req = Command({"pwd"});
  req.cwd = "/nonexistent-kiln-dir";
  c.Send(req, -1, out.w.get(), -1);
  out.w.reset();
  EXPECT_EQ(c.Reply().exit_code, 0);
  EXPECT_EQ(ReadToEof(out.r.get()), (dir_ / "home").string() + "\n");
}

TEST_F(SudoServerTest, SignalMessagesReachTheCommand) {
  StartServer();
  Pipe out = Pipe::Make();
  Client c(socket_path());
  c.Send(Command({"sh", "-c", "echo started; exec sleep 100"}), -1, out.w.get(), -1);
  out.w.reset();
  ASSERT_EQ(ReadLine(out.r.get()), "started\n");  // "started\n": the command runs
  c.Signal(SIGTERM);
  SudoReply reply = c.Reply();
  EXPECT_EQ(reply.signal, SIGTERM);
  EXPECT_EQ(reply.ClientExitStatus(), 128 + SIGTERM);
}

TEST_F(SudoServerTest, ClientGoneHangsUpTheCommand) {
  StartServer();
  Pipe out = Pipe::Make();
  Client c(socket_path());
  c.Send(Command({"sh", "-c", "echo started; exec sleep 100"}), -1, out.w.get(), -1);
  out.w.reset();
  ASSERT_EQ(ReadLine(out.r.get()), "started\n");
  c.Close();
  // The pipe reaches EOF when sleep (its last writer) is gone.
  EXPECT_EQ(ReadToEof(out.r.get()), "");
}

TEST_F(SudoServerTest, CommandNotFoundAndUnknownUser) {
  StartServer();
  Client c(socket_path());
  c.Send(Command({"no-such-command-kiln"}), -1, -1, -1);
  SudoReply reply = c.Reply();
  EXPECT_EQ(reply.exit_code, 1);
  EXPECT_EQ(reply.err, "sudo: no-such-command-kiln: command not found\n");
  Client d(socket_path());
  SudoRequest req = Command({"id"});
  req.user = "mallory";
  d.Send(req, -1, -1, -1);
  EXPECT_EQ(d.Reply().err, "sudo: unknown user mallory\n");
}

TEST_F(SudoServerTest, MalformedRequestGetsAnErrorReply) {
  StartServer();
  Client c(socket_path());
  c.SendRaw(EncodeFrame("{\"argv\": 42}"));
  SudoReply reply = c.Reply();
  EXPECT_EQ(reply.exit_code, 1);
  EXPECT_NE(reply.err.find("malformed"), std::string::npos) << reply.err;
  // The server lives on.
  Client d(socket_path());
  d.Send(Command({"true"}), -1, -1, -1);
  EXPECT_EQ(d.Reply().exit_code, 0);
}

TEST_F(SudoServerTest, DescriptorCountMustMatchTheRequest) {
  StartServer();
  Client c(socket_path());
  c.SendRaw(EncodeFrame(RequestToJson(Command({"true"}))));  // announces 3, sends none
  SudoReply reply = c.Reply();
  EXPECT_EQ(reply.exit_code, 1);
  EXPECT_NE(reply.err.find("descriptors"), std::string::npos) << reply.err;
}

TEST_F(SudoServerTest, OversizedRequestIsRefused) {
  StartServer();
  Client c(socket_path());
  const char header[4] = {0, 0x20, 0, 0};  // 2 MiB
  c.SendRaw(std::string_view(header, 4));
  SudoReply reply = c.Reply();
  EXPECT_EQ(reply.exit_code, 1);
  EXPECT_NE(reply.err.find("exceeds the limit"), std::string::npos) << reply.err;
}

TEST_F(SudoServerTest, SlowRequestTimesOut) {
  StartServer(64, std::chrono::milliseconds(200));
  Client c(socket_path());
  c.SendRaw(std::string_view("\0\0", 2));
  SudoReply reply = c.Reply();
  EXPECT_EQ(reply.exit_code, 1);
  EXPECT_NE(reply.err.find("timed out"), std::string::npos) << reply.err;
}

TEST_F(SudoServerTest, SessionLimit) {
  StartServer(/*max_sessions=*/1);
  Pipe out = Pipe::Make();
  Client first(socket_path());
  first.Send(Command({"sh", "-c", "echo started; exec sleep 100"}), -1, out.w.get(), -1);
  out.w.reset();
  ASSERT_EQ(ReadLine(out.r.get()), "started\n");
  Client second(socket_path());
  SudoReply reply = second.Reply();
  EXPECT_EQ(reply.exit_code, 1);
  EXPECT_NE(reply.err.find("too many"), std::string::npos) << reply.err;
  first.Signal(SIGKILL);
  EXPECT_EQ(first.Reply().signal, SIGKILL);
}

TEST_F(SudoServerTest, ListNeedsNoCommand) {
  StartServer();
  Client c(socket_path());
  SudoRequest req;
  req.list = true;
  c.Send(req, -1, -1, -1);
  SudoReply reply = c.Reply();
  EXPECT_EQ(reply.exit_code, 0);
  EXPECT_NE(reply.out.find("User " + name_ + " may run the following commands"), std::string::npos)
      << reply.out;
}

TEST_F(SudoServerTest, UserOutsideGroupSudoIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);  // bob must reach the socket
  StartServer();
  // SO_PEERCRED records the effective uid at connect().
  ASSERT_EQ(setresuid(-1, 1001, -1), 0);
  Client c(socket_path());
  ASSERT_EQ(setresuid(-1, 0, -1), 0);
  c.Send(Command({"true"}), -1, -1, -1);
  SudoReply reply = c.Reply();
  EXPECT_EQ(reply.exit_code, 1);
  EXPECT_EQ(reply.err, "bob is not in the sudoers file.\n");
}

}  // namespace
}  // namespace kiln::envd::sudo
