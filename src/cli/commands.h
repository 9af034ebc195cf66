#pragma once

// The remote commands, one file each: sandbox_commands.cc (create, list, kill, pause, resume,
// info), exec.cc, shell.cc and copy.cc. Each runs as a coroutine on the CLI's io_context and
// returns the process exit status; an Error is printed by the caller as "kiln: <message>"
// with exit status 1.

#include "base/error.h"
#include "cli/command_line.h"
#include "cli/io.h"
#include "cli/kilnd_client.h"
#include "http/server.h"

namespace kiln::cli {

struct CommandContext {
  const Io& io;
  const Environment& env;
  KilndClient& kilnd;
};

http::Task<Result<int>> RunCreate(CommandContext& ctx, const CreateCommand& cmd);
http::Task<Result<int>> RunList(CommandContext& ctx, const ListCommand& cmd);
http::Task<Result<int>> RunKill(CommandContext& ctx, const KillCommand& cmd);
http::Task<Result<int>> RunPause(CommandContext& ctx, const PauseCommand& cmd);
http::Task<Result<int>> RunResume(CommandContext& ctx, const ResumeCommand& cmd);
http::Task<Result<int>> RunInfo(CommandContext& ctx, const InfoCommand& cmd);
http::Task<Result<int>> RunExec(CommandContext& ctx, const ExecCommand& cmd);
http::Task<Result<int>> RunShell(CommandContext& ctx, const ShellCommand& cmd);
http::Task<Result<int>> RunCopy(CommandContext& ctx, const CopyCommand& cmd);

// Body of POST /v2/sandboxes for `cmd`.
std::string CreateRequestBody(const CreateCommand& cmd);
// GET /v2/sandboxes target for one page (without the base path).
std::string ListTarget(const ListCommand& cmd, const std::string& next_token);
// The `metadata` list filter as the SDK encodes it: "k=v&k2=v2" with keys and values escaped
// twice, the whole escaped as a query value; kilnd unescapes it, splits, unescapes each part.
std::string MetadataQueryValue(const std::map<std::string, std::string>& metadata);

}  // namespace kiln::cli
