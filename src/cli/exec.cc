// kiln sandbox exec: runs a command through envd's process.Process/Start, streams its output,
// forwards stdin, and exits with the command's status.

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

namespace kiln::cli {

namespace {

namespace net = boost::asio;

constexpr size_t kInputPiece = 64 * 1024;

// Stdin is forwarded unless it is a terminal (use `shell` for that) or /dev/null.
bool ShouldForwardStdin(int fd) { return !isatty(fd) && !IsDevNull(fd); }

ExecSpec MakeExecSpec(const ExecCommand& cmd, bool forward_stdin) {
  ExecSpec spec;
  spec.command = CommandScript(cmd.command);
  spec.envs = cmd.envs;
  spec.cwd = cmd.cwd;
  spec.stdin = forward_stdin;
  return spec;
}

// Copies stdin to the process until EOF (then CloseStdin), cancellation, or a failed send
// (the process is gone: nothing left to feed).
http::Task<void> PumpStdin(ProcessClient& proc, InputReader& reader, uint32_t pid,
                           const Io& io) {
  for (;;) {
    auto data = co_await reader.Read(kInputPiece);
    if (!data) {
      if (data.error().code() != Errc::kCanceled) PrintError(io.err, data.error().message());
      co_return;
    }
    if (data->empty()) {
      (void)co_await proc.Unary("CloseStdin", SelectorRequest(pid));
      co_return;
    }
    if (!co_await proc.Unary("SendInput", SendInputRequest(pid, *data, false))) co_return;
  }
}

// Ctrl-C, SIGTERM and SIGHUP ask the remote command to stop (SIGTERM); a second one kills it.
// The stream then ends as usual and carries the command's status.
http::Task<void> ForwardSignals(net::signal_set& signals, ProcessClient& proc, uint32_t pid) {
  int received = 0;
  for (;;) {
    boost::system::error_code ec;
    co_await signals.async_wait(net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return;
    ++received;
    (void)co_await proc.Unary("SendSignal", SignalRequest(pid, /*kill=*/received > 1));
  }
}

// The first event of a Start stream must be `start`; envd sends it once the process runs.
http::Task<Result<uint32_t>> AwaitStart(ProcessClient& proc) {
  for (;;) {
    KILN_CO_ASSIGN_OR_RETURN(std::optional<ProcessEvent> ev, co_await proc.Next());
    if (!ev) co_return Fail(Errc::kInternal, "the process stream ended before it started");
    if (ev->kind == ProcessEvent::Kind::kStart) co_return ev->pid;
    if (ev->kind != ProcessEvent::Kind::kKeepalive) {
      co_return Fail(Errc::kInternal, "the process stream did not begin with a start event");
    }
  }
}

struct StreamOutcome {
  std::optional<ProcessEnd> end;
  std::optional<Error> error;
  bool output_closed = false;  // our stdout/stderr went away (EPIPE)
};

// Writes output events to the local descriptors until the stream ends.
http::Task<StreamOutcome> CopyOutput(ProcessClient& proc, const Io& io) {
  StreamOutcome out;
  for (;;) {
    auto ev = co_await proc.Next();
    if (!ev) {
      out.error = std::move(ev).error();
      co_return out;
    }
    if (!*ev) co_return out;
    const ProcessEvent& e = **ev;
    Status written;
    if (e.kind == ProcessEvent::Kind::kStdout || e.kind == ProcessEvent::Kind::kPty) {
      written = WriteAll(io.out, e.data);
    } else if (e.kind == ProcessEvent::Kind::kStderr) {
      written = WriteAll(io.err, e.data);
    } else if (e.kind == ProcessEvent::Kind::kEnd) {
      out.end = e.end;
    }
    if (!written) {
      out.output_closed = true;
      co_return out;
    }
  }
}

int FinishExec(const StreamOutcome& outcome, const Io& io) {
  if (outcome.output_closed) return 128 + SIGPIPE;
  if (outcome.error) {
    PrintError(io.err, outcome.error->message());
    return ExitCodeForError(*outcome.error);
  }
  if (!outcome.end) {
    PrintError(io.err, "the process stream ended without the command's exit status");
    return 1;
  }
  return ExitCodeFor(*outcome.end);
}

}  // namespace

http::Task<Result<int>> RunExec(CommandContext& ctx, const ExecCommand& cmd) {
  KILN_CO_ASSIGN_OR_RETURN(SandboxAccess access, co_await ctx.kilnd.Access(cmd.id));
  ProcessClient proc(ctx.kilnd, access, cmd.user);
  bool forward = ShouldForwardStdin(ctx.io.in);
  std::optional<std::chrono::milliseconds> timeout;
  if (cmd.timeout_s && *cmd.timeout_s > 0) timeout = std::chrono::seconds(*cmd.timeout_s);
  KILN_CO_TRY(co_await proc.Start(ExecStartRequest(MakeExecSpec(cmd, forward)), timeout));
  KILN_CO_ASSIGN_OR_RETURN(uint32_t pid, co_await AwaitStart(proc));

  auto executor = co_await net::this_coro::executor;
  TaskGroup tasks(executor);
  std::unique_ptr<InputReader> reader;
  if (forward) {
    auto opened = InputReader::Open(executor, ctx.io.in);
    if (!opened) {
      (void)co_await proc.Unary("SendSignal", SignalRequest(pid, /*kill=*/true));
      co_return Unexpected(std::move(opened).error());
    }
    reader = std::move(*opened);
    tasks.Spawn(PumpStdin(proc, *reader, pid, ctx.io));
  }
  net::signal_set signals(executor, SIGINT, SIGTERM, SIGHUP);
  tasks.Spawn(ForwardSignals(signals, proc, pid));

  StreamOutcome outcome = co_await CopyOutput(proc, ctx.io);
  if (outcome.output_closed) {
    // Like a local pipeline: the reader left, so the writer is stopped.
    (void)co_await proc.Unary("SendSignal", SignalRequest(pid, /*kill=*/true));
  }
  if (reader) reader->Cancel();
  boost::system::error_code ignored;
  signals.cancel(ignored);
  co_await tasks.Wait();
  co_return FinishExec(outcome, ctx.io);
}

}  // namespace kiln::cli
