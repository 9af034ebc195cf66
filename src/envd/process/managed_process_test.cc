#include "envd/process/managed_process.h"

#include <signal.h>
#include <sys/wait.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <fstream>
#include <functional>
#include <gtest/gtest.h>
#include <map>

#include "envd/process/child_reaper.h"

namespace kiln::envd {
namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using wire::InputKind;

// What a subscriber received.
struct Received {
  std::string out, err, pty;
  std::optional<wire::EndEvent> end;
  bool end_was_last = true;
};

class ManagedProcessTest : public testing::Test {
 protected:
  struct Options {
    bool stdin_pipe = true;
    std::optional<wire::PtySize> pty;
  };

  std::shared_ptr<ManagedProcess> Launch(std::string script, Options opts) {
    LaunchSpec spec;
    spec.spawn.path = "/bin/sh";
    spec.spawn.argv = {"sh", "-c", script};
    spec.spawn.env = {"PATH=/usr/bin:/bin", "TERM=dumb"};
    spec.spawn.cwd = "/";
    spec.spawn.uid = geteuid();
    spec.spawn.gid = getegid();
    spec.stdin_pipe = opts.stdin_pipe;
    spec.pty = opts.pty;
    spec.config.cmd = "/bin/sh";
    auto proc = LaunchProcess(io_, std::move(spec));
    EXPECT_TRUE(proc) << proc.error().message();
    if (!proc) return nullptr;
    procs_[(*proc)->pid()] = *proc;
    return *proc;
  }
  std::shared_ptr<ManagedProcess> Launch(std::string script) { return Launch(script, Options{}); }

  bool RunUntil(const std::function<bool()>& done, std::chrono::milliseconds limit = 5000ms) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < end) io_.run_one_for(10ms);
    return done();
  }

  static Received Drain(Subscriber& sub) {
    Received r;
    while (auto ev = sub.Pop()) {
      if (r.end) r.end_was_last = false;
      if (ev->end) {
        r.end = ev->end;
        continue;
      }
      std::string& to = ev->kind == wire::OutputKind::kStdout   ? r.out
                        : ev->kind == wire::OutputKind::kStderr ? r.err
                                                                : r.pty;
      to += ev->data;
    }
    return r;
  }

  // Runs the process to its end and returns what one subscriber saw.
  Received RunToEnd(const std::shared_ptr<ManagedProcess>& proc,
                    const std::shared_ptr<Subscriber>& sub) {
    EXPECT_TRUE(RunUntil([&] { return proc->finished(); }));
    return Drain(*sub);
  }

  Status Write(const std::shared_ptr<ManagedProcess>& proc, InputKind kind, std::string data) {
    std::optional<Status> result;
    net::co_spawn(io_, proc->WriteInput(wire::ProcessInput{kind, std::move(data)}),
                  [&](std::exception_ptr, Status st) { result = std::move(st); });
    EXPECT_TRUE(RunUntil([&] { return result.has_value(); }));
    return result.value_or(Fail(Errc::kInternal, "write did not finish"));
  }

  static bool Dead(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string pid_s, comm, state;
    if (!(stat >> pid_s >> comm >> state)) return true;
    return state == "Z" || state == "X";
  }

  net::io_context io_;
  std::map<pid_t, std::shared_ptr<ManagedProcess>> procs_;
  ChildReaper reaper_{io_, [this](pid_t pid, int status) {
                        auto it = procs_.find(pid);
                        if (it != procs_.end()) it->second->OnExit(status);
                      }};
};

TEST_F(ManagedProcessTest, DeliversOutputThenTheExitStatus) {
  auto proc = Launch("echo out; echo err >&2; exit 3");
  auto sub = proc->Subscribe();
  Received r = RunToEnd(proc, sub);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  ASSERT_TRUE(r.end);
  EXPECT_TRUE(r.end_was_last);
  EXPECT_EQ(r.end->exit_code, 3);
  EXPECT_TRUE(r.end->exited);
  EXPECT_EQ(r.end->status, "exit status 3");
  EXPECT_EQ(r.end->error, "exit status 3");
}

TEST_F(ManagedProcessTest, ExitZeroHasNoError) {
  auto proc = Launch("true");
  auto sub = proc->Subscribe();
  Received r = RunToEnd(proc, sub);
  ASSERT_TRUE(r.end);
  EXPECT_EQ(r.end->exit_code, 0);
  EXPECT_EQ(r.end->status, "exit status 0");
  EXPECT_FALSE(r.end->error);
}

TEST_F(ManagedProcessTest, AllOutputWrittenBeforeExitArrives) {
  auto proc = Launch("head -c 300000 /dev/zero; head -c 70000 /dev/zero >&2");
  auto sub = proc->Subscribe();
  Received r = RunToEnd(proc, sub);
  EXPECT_EQ(r.out.size(), 300000u);
  EXPECT_EQ(r.err.size(), 70000u);
  EXPECT_TRUE(r.end_was_last);
}

TEST_F(ManagedProcessTest, BackgroundGrandchildDoesNotHoldTheEnd) {
  auto proc = Launch("sleep 30 & echo $!; echo bye");
  auto sub = proc->Subscribe();
  auto start = std::chrono::steady_clock::now();
  Received r = RunToEnd(proc, sub);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  ASSERT_TRUE(r.end);
  EXPECT_EQ(r.end->exit_code, 0);
  pid_t grandchild = std::stoi(r.out);
  EXPECT_TRUE(r.out.ends_with("bye\n")) << r.out;
  kill(grandchild, SIGKILL);
}

TEST_F(ManagedProcessTest, SignalReachesTheWholeGroup) {
  auto proc = Launch("sleep 30 & echo $!; wait");
  auto sub = proc->Subscribe();
  std::string out;
  ASSERT_TRUE(RunUntil([&] {
    out += Drain(*sub).out;
    return !out.empty();
  }));
  ASSERT_TRUE(proc->Signal(SIGTERM));
  Received r = RunToEnd(proc, sub);
  ASSERT_TRUE(r.end);
  EXPECT_EQ(r.end->exit_code, -1);
  EXPECT_FALSE(r.end->exited);
  EXPECT_EQ(r.end->status, "signal: terminated");
  // The orphaned sleep is collected by PID 1, so its group may linger for a moment.
  EXPECT_TRUE(RunUntil([&] { return kill(-proc->pid(), 0) == -1; }))
      << "process group still has members";
}

TEST_F(ManagedProcessTest, SignalAfterExitIsNotFound) {
  auto proc = Launch("exit 0");
  ASSERT_TRUE(RunUntil([&] { return proc->finished(); }));
  Status st = proc->Signal(SIGKILL);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kNotFound);
}

TEST_F(ManagedProcessTest, KillAtEndsTheProcessAndMarksTimeout) {
  auto proc = Launch("sleep 30");
  auto sub = proc->Subscribe();
  proc->KillAt(std::chrono::steady_clock::now() + 100ms);
  Received r = RunToEnd(proc, sub);
  EXPECT_TRUE(proc->timed_out());
  ASSERT_TRUE(r.end);
  EXPECT_EQ(r.end->status, "signal: killed");
  EXPECT_EQ(r.end->exit_code, -1);
}

TEST_F(ManagedProcessTest, KillAtAfterExitDoesNothing) {
  auto proc = Launch("true");
  proc->KillAt(std::chrono::steady_clock::now() + 50ms);
  ASSERT_TRUE(RunUntil([&] { return proc->finished(); }));
  io_.run_for(100ms);
  EXPECT_FALSE(proc->timed_out());
}

TEST_F(ManagedProcessTest, StdinWritesThenEof) {
  auto proc = Launch("cat; echo eof");
  auto sub = proc->Subscribe();
  ASSERT_TRUE(Write(proc, InputKind::kStdin, "hello "));
  ASSERT_TRUE(Write(proc, InputKind::kStdin, "world\n"));
  ASSERT_TRUE(proc->CloseStdin());
  Received r = RunToEnd(proc, sub);
  EXPECT_EQ(r.out, "hello world\neof\n");
  Status late = Write(proc, InputKind::kStdin, "x");
  EXPECT_FALSE(late);
}

TEST_F(ManagedProcessTest, ConcurrentWritesDoNotInterleave) {
  auto proc = Launch("cat");
  auto sub = proc->Subscribe();
  // Larger than a pipe buffer, so each write takes several write(2) calls.
  std::string a(300000, 'a'), b(300000, 'b');
  int done = 0;
  for (std::string* data : {&a, &b}) {
    net::co_spawn(io_, proc->WriteInput(wire::ProcessInput{InputKind::kStdin, *data}),
                  [&](std::exception_ptr, Status st) {
                    EXPECT_TRUE(st);
                    ++done;
                  });
  }
  ASSERT_TRUE(RunUntil([&] { return done == 2; }));
  ASSERT_TRUE(proc->CloseStdin());
  Received r = RunToEnd(proc, sub);
  EXPECT_TRUE(r.out == a + b || r.out == b + a);
}

TEST_F(ManagedProcessTest, StdinFalseMeansDevNull) {
  auto proc = Launch("cat; echo done", Options{.stdin_pipe = false, .pty = std::nullopt});
  auto sub = proc->Subscribe();
  Received r = RunToEnd(proc, sub);
  EXPECT_EQ(r.out, "done\n");
}

TEST_F(ManagedProcessTest, InputToAProcessWithoutStdinOrPtyIsRefused) {
  auto proc = Launch("sleep 30", Options{.stdin_pipe = false, .pty = std::nullopt});
  Status st = Write(proc, InputKind::kStdin, "x");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kFailedPrecondition);
  st = Write(proc, InputKind::kPty, "x");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kFailedPrecondition);
  Status resize = proc->Resize({10, 10});
  ASSERT_FALSE(resize);
  EXPECT_EQ(resize.error().code(), Errc::kFailedPrecondition);
  ASSERT_TRUE(proc->Signal(SIGKILL));
  ASSERT_TRUE(RunUntil([&] { return proc->finished(); }));
}

TEST_F(ManagedProcessTest, PtyGetsInputResizeAndReportsOutput) {
  auto proc = Launch("stty size; read line; echo got:$line; read x; stty size",
                     Options{.stdin_pipe = true, .pty = wire::PtySize{100, 30}});
  auto sub = proc->Subscribe();
  ASSERT_TRUE(Write(proc, InputKind::kPty, "abc\n"));
  std::string seen;
  ASSERT_TRUE(RunUntil([&] {
    seen += Drain(*sub).pty;
    return seen.find("got:abc") != std::string::npos;
  }));
  ASSERT_TRUE(proc->Resize({50, 20}));
  // `stdin` input to a PTY process goes to the terminal too.
  ASSERT_TRUE(Write(proc, InputKind::kStdin, "\n"));
  Received r = RunToEnd(proc, sub);
  seen += r.pty;
  EXPECT_NE(seen.find("30 100\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("20 50\r\n"), std::string::npos) << seen;
  EXPECT_TRUE(r.out.empty() && r.err.empty());
  ASSERT_TRUE(r.end);
  EXPECT_EQ(r.end->exit_code, 0);
  Status close = proc->CloseStdin();
  EXPECT_FALSE(close);
}

TEST_F(ManagedProcessTest, EverySubscriberGetsEverythingFromItsStart) {
  auto proc = Launch("read x; echo line");
  auto a = proc->Subscribe();
  auto b = proc->Subscribe();
  ASSERT_TRUE(Write(proc, InputKind::kStdin, "\n"));
  Received ra = RunToEnd(proc, a);
  Received rb = Drain(*b);
  EXPECT_EQ(ra.out, "line\n");
  EXPECT_EQ(rb.out, "line\n");
  ASSERT_TRUE(ra.end && rb.end);
  // After the end a subscriber gets only the end.
  auto late = proc->Subscribe();
  Received rl = Drain(*late);
  EXPECT_EQ(rl.out, "");
  ASSERT_TRUE(rl.end);
  EXPECT_EQ(rl.end->exit_code, 0);
}

TEST_F(ManagedProcessTest, GoneSubscriberDoesNotStopOthers) {
  auto proc = Launch("echo x");
  auto keep = proc->Subscribe();
  proc->Subscribe().reset();
  Received r = RunToEnd(proc, keep);
  EXPECT_EQ(r.out, "x\n");
}

TEST(SubscriberTest, OverflowDropsTheQueue) {
  net::io_context io;
  Subscriber sub(io);
  auto big = std::make_shared<ProcessEvent>();
  big->data.assign(Subscriber::kMaxQueuedBytes / 2 + 1, 'x');
  sub.Push(big);
  EXPECT_FALSE(sub.overflowed());
  sub.Push(big);
  EXPECT_TRUE(sub.overflowed());
  EXPECT_EQ(sub.Pop(), nullptr);
}

TEST(SubscriberTest, PopReturnsInOrderAndFreesBudget) {
  net::io_context io;
  Subscriber sub(io);
  for (int i = 0; i < 3; ++i) {
    auto big = std::make_shared<ProcessEvent>();
    big->data.assign(Subscriber::kMaxQueuedBytes / 2, static_cast<char>('a' + i));
    sub.Push(big);
    if (i == 0) continue;
    auto ev = sub.Pop();
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->data[0], static_cast<char>('a' + i - 1));
  }
  EXPECT_FALSE(sub.overflowed());
}

TEST(EndEventTest, FromWaitStatus) {
  wire::EndEvent ok = EndEventFromWaitStatus(W_EXITCODE(0, 0));
  EXPECT_EQ(ok.exit_code, 0);
  EXPECT_TRUE(ok.exited);
  EXPECT_FALSE(ok.error);
  wire::EndEvent two = EndEventFromWaitStatus(W_EXITCODE(2, 0));
  EXPECT_EQ(two.status, "exit status 2");
  EXPECT_EQ(two.error, "exit status 2");
  wire::EndEvent killed = EndEventFromWaitStatus(SIGKILL);
  EXPECT_EQ(killed.exit_code, -1);
  EXPECT_FALSE(killed.exited);
  EXPECT_EQ(killed.status, "signal: killed");
  EXPECT_EQ(killed.error, "signal: killed");
  EXPECT_EQ(EndEventFromWaitStatus(SIGSEGV | WCOREFLAG).status,
            "signal: segmentation fault (core dumped)");
}

}  // namespace
}  // namespace kiln::envd
