#include "cli/cli.h"

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>

#include "cli/commands.h"
#include "cli/endpoint.h"
#include "cli/mcp_command.h"

namespace kiln::cli {

namespace {

namespace net = boost::asio;

http::Task<Result<int>> Dispatch(CommandContext& ctx, const Command& command) {
  if (auto* c = std::get_if<CreateCommand>(&command)) co_return co_await RunCreate(ctx, *c);
  if (auto* c = std::get_if<ListCommand>(&command)) co_return co_await RunList(ctx, *c);
  if (auto* c = std::get_if<KillCommand>(&command)) co_return co_await RunKill(ctx, *c);
  if (auto* c = std::get_if<PauseCommand>(&command)) co_return co_await RunPause(ctx, *c);
  if (auto* c = std::get_if<ResumeCommand>(&command)) co_return co_await RunResume(ctx, *c);
  if (auto* c = std::get_if<InfoCommand>(&command)) co_return co_await RunInfo(ctx, *c);
  if (auto* c = std::get_if<ExecCommand>(&command)) co_return co_await RunExec(ctx, *c);
  if (auto* c = std::get_if<ShellCommand>(&command)) co_return co_await RunShell(ctx, *c);
  if (auto* c = std::get_if<CopyCommand>(&command)) co_return co_await RunCopy(ctx, *c);
  co_return Fail(Errc::kInternal, "command not implemented");
}

// Runs a remote command to completion on a private io_context.
int RunRemote(const CommandLine& line, const Io& io, const Environment& env) {
  auto endpoint = ParseEndpoint(line.global.api_url);
  if (!endpoint) {
    PrintError(io.err, endpoint.error().message());
    return 2;
  }
  // Before the client: its connections must be destroyed while their io_context exists.
  net::io_context loop(1);
  KilndClient kilnd(std::move(*endpoint), line.global.api_key);
  CommandContext ctx{io, env, kilnd};
  std::optional<Result<int>> result;
  std::exception_ptr thrown;
  net::co_spawn(loop, Dispatch(ctx, line.command),
                [&](std::exception_ptr e, Result<int> r) {
                  thrown = e;
                  if (!e) result.emplace(std::move(r));
                });
  try {
    loop.run();
  } catch (const std::exception& e) {
    // Boost and the standard library may throw; that ends the command, not the process.
    PrintError(io.err, std::string("internal error: ") + e.what());
    return 1;
  }
  if (thrown || !result) {
    std::string what = "internal error";
    try {
      if (thrown) std::rethrow_exception(thrown);
    } catch (const std::exception& e) {
      what += std::string(": ") + e.what();
    }
    PrintError(io.err, what);
    return 1;
  }
  if (!*result) {
    PrintError(io.err, result->error().message());
    return 1;
  }
  return **result;
}

}  // namespace

int Run(const std::vector<std::string>& args, const Io& io, const Environment& env,
        const LocalCommands& local) {
  // `kiln mcp` is a long-running server with flags of its own (cli/mcp_command.h).
  if (mcp::IsMcpCommand(args)) return mcp::RunMcp(args, io, env);
  auto line = ParseCommandLine(args, env);
  if (!line) {
    PrintError(io.err, line.error().message);
    (void)WriteAll(io.err, "\n" + line.error().usage);
    return 2;
  }
  if (auto* help = std::get_if<HelpCommand>(&line->command)) {
    return WriteAll(io.out, help->text) ? 0 : 1;
  }
  if (auto* keys = std::get_if<KeysCreateCommand>(&line->command)) {
    if (!local.keys_create) {
      PrintError(io.err, "keys create is not available in this build");
      return 1;
    }
    return local.keys_create(*keys, io);
  }
  if (auto* up = std::get_if<UpCommand>(&line->command)) {
    if (!local.up) {
      PrintError(io.err, "up is not available in this build");
      return 1;
    }
    return local.up(*up, io);
  }
  return RunRemote(*line, io, env);
}

}  // namespace kiln::cli
