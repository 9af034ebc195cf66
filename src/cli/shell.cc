// kiln sandbox shell: an interactive login shell on a PTY in the sandbox, with the local
// terminal in raw mode, keystrokes forwarded (SendInput pty), and window size changes
// forwarded (Update).

#include <signal.h>
#include <unistd.h>

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "cli/commands.h"
#include "cli/input_reader.h"
#include "cli/process_client.h"
#include "cli/task_group.h"
#include "cli/terminal.h"

namespace kiln::cli {

namespace {

namespace net = boost::asio;

constexpr size_t kKeysPiece = 16 * 1024;

PtySpec MakePtySpec(const ShellCommand& cmd, WindowSize size, const Environment& env) {
  PtySpec spec;
  spec.cols = size.cols;
  spec.rows = size.rows;
  spec.cwd = cmd.cwd;
  // The remote terminal should speak the local terminal's dialect.
  if (auto term = env.Get("TERM"); term && !term->empty()) spec.envs["TERM"] = *term;
  return spec;
}

// Keystrokes to the PTY, in order (one SendInput at a time), until cancelled or the process
// is gone. At EOF of the local terminal (hangup) the remote shell is killed.
http::Task<void> PumpKeys(ProcessClient& proc, InputReader& reader, uint32_t pid) {
  for (;;) {
    auto data = co_await reader.Read(kKeysPiece);
    if (!data) co_return;
    if (data->empty()) {
      (void)co_await proc.Unary("SendSignal", SignalRequest(pid, /*kill=*/true));
      co_return;
    }
    if (!co_await proc.Unary("SendInput", SendInputRequest(pid, *data, /*pty=*/true))) co_return;
  }
}

// SIGWINCH resizes the remote PTY; SIGTERM, SIGHUP and SIGINT end the session (the remote
// shell is killed, the stream then ends and the terminal is restored on the way out).
http::Task<void> HandleSignals(net::signal_set& signals, ProcessClient& proc, uint32_t pid,
                               int tty) {
  for (;;) {
    boost::system::error_code ec;
    int sig = co_await signals.async_wait(net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return;
    if (sig == SIGWINCH) {
      if (auto size = GetWindowSize(tty)) {
        (void)co_await proc.Unary("Update", ResizeRequest(pid, size->cols, size->rows));
      }
      continue;
    }
    (void)co_await proc.Unary("SendSignal", SignalRequest(pid, /*kill=*/true));
  }
}

http::Task<Result<uint32_t>> AwaitPtyStart(ProcessClient& proc) {
  for (;;) {
    KILN_CO_ASSIGN_OR_RETURN(std::optional<ProcessEvent> ev, co_await proc.Next());
    if (!ev) co_return Fail(Errc::kInternal, "the shell's stream ended before it started");
    if (ev->kind == ProcessEvent::Kind::kStart) co_return ev->pid;
  }
}

// PTY output to the local terminal until the stream ends; returns the shell's end.
http::Task<Result<std::optional<ProcessEnd>>> CopyScreen(ProcessClient& proc, int out) {
  std::optional<ProcessEnd> end;
  for (;;) {
    KILN_CO_ASSIGN_OR_RETURN(std::optional<ProcessEvent> ev, co_await proc.Next());
    if (!ev) co_return end;
    if (ev->kind == ProcessEvent::Kind::kPty || ev->kind == ProcessEvent::Kind::kStdout) {
      KILN_CO_TRY(WriteAll(out, ev->data));
    } else if (ev->kind == ProcessEvent::Kind::kEnd) {
      end = ev->end;
    }
  }
}

}  // namespace

http::Task<Result<int>> RunShell(CommandContext& ctx, const ShellCommand& cmd) {
  if (!isatty(ctx.io.in)) {
    co_return Fail(Errc::kInvalidArgument,
                   "shell needs a terminal on stdin (for scripts use `kiln sandbox exec`)");
  }
  WindowSize size = GetWindowSize(ctx.io.in).value_or(WindowSize{});
  KILN_CO_ASSIGN_OR_RETURN(SandboxAccess access, co_await ctx.kilnd.Access(cmd.id));
  ProcessClient proc(ctx.kilnd, access, cmd.user);
  // No Connect-Timeout-Ms: envd would end the shell when it elapsed.
  KILN_CO_TRY(co_await proc.Start(PtyStartRequest(MakePtySpec(cmd, size, ctx.env)), std::nullopt));
  KILN_CO_ASSIGN_OR_RETURN(uint32_t pid, co_await AwaitPtyStart(proc));

  auto executor = co_await net::this_coro::executor;
  auto raw = RawTerminal::Enter(ctx.io.in);
  auto reader = InputReader::Open(executor, ctx.io.in);
  if (!raw || !reader) {
    (void)co_await proc.Unary("SendSignal", SignalRequest(pid, /*kill=*/true));
    if (!raw) co_return Unexpected(std::move(raw).error());
    co_return Unexpected(std::move(reader).error());
  }
  TaskGroup tasks(executor);
  tasks.Spawn(PumpKeys(proc, **reader, pid));
  net::signal_set signals(executor, SIGWINCH, SIGTERM, SIGHUP);
  signals.add(SIGINT);
  tasks.Spawn(HandleSignals(signals, proc, pid, ctx.io.in));

  auto end = co_await CopyScreen(proc, ctx.io.out);
  (*reader)->Cancel();
  boost::system::error_code ignored;
  signals.cancel(ignored);
  co_await tasks.Wait();
  raw->Restore();
  reader->reset();  // puts the terminal's file status flags back
  if (!end) co_return Unexpected(std::move(end).error());
  if (!*end) co_return Fail(Errc::kUnavailable, "the shell's stream ended without its exit status");
  co_return ExitCodeFor(**end);
}

}  // namespace kiln::cli
