#pragma once

// The kiln command line, parsed into one typed command. Usage errors come back with the usage
// text of the level they happened at (the caller prints both and exits 2); --help is a
// command of its own (usage on stdout, exit 0).

#include <cstdint>
#include <expected>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cli/io.h"

namespace kiln::cli {

struct GlobalOptions {
  std::string api_url;  // --api-url, E2B_API_URL, or the default
  std::string api_key;  // --api-key or E2B_API_KEY; may be empty
};

struct HelpCommand {
  std::string text;
};

struct CreateCommand {
  std::string template_id = "base";
  std::optional<int64_t> timeout_s;
  std::map<std::string, std::string> metadata;
  std::map<std::string, std::string> envs;
  bool no_internet = false;
  bool json = false;
};

struct ListCommand {
  std::vector<std::string> states;  // empty: the server's default (running and paused)
  std::map<std::string, std::string> metadata;
  bool json = false;
};

struct KillCommand {
  std::vector<std::string> ids;
};

struct PauseCommand {
  std::string id;
};

struct ResumeCommand {
  std::string id;
  std::optional<int64_t> timeout_s;
};

struct InfoCommand {
  std::string id;
  bool json = false;
};

struct ExecCommand {
  std::string id;
  std::optional<std::string> user;
  std::optional<std::string> cwd;
  std::map<std::string, std::string> envs;
  std::vector<std::string> command;
  std::optional<int64_t> timeout_s;  // process lifetime; none by default
};

struct ShellCommand {
  std::string id;
  std::optional<std::string> user;
  std::optional<std::string> cwd;
};

struct CopyCommand {
  std::string src;
  std::string dst;
  std::optional<std::string> user;
};

// Local commands (run by main with kilnd's libraries; see cli.h).
struct KeysCreateCommand {
  std::string data_dir = "/var/lib/kiln";
  std::string name = "cli";
};

struct UpCommand {
  std::string data_dir = "/var/lib/kiln";
  std::string listen = "127.0.0.1:3000";
  std::string template_dir;  // <data_dir>/templates unless given
  std::optional<std::string> envd;  // kiln-envd to build with; beside kiln unless given
  bool build = true;                // false with --no-build
  // kilnd's argv after its name: --data-dir, --listen, the flags above when given, then
  // every other flag passed through unchanged.
  std::vector<std::string> kilnd_args;
};

using Command = std::variant<HelpCommand, CreateCommand, ListCommand, KillCommand, PauseCommand,
                             ResumeCommand, InfoCommand, ExecCommand, ShellCommand, CopyCommand,
                             KeysCreateCommand, UpCommand>;

struct CommandLine {
  GlobalOptions global;
  Command command;
};

struct UsageError {
  std::string message;
  std::string usage;
};

// `args` excludes the program name.
std::expected<CommandLine, UsageError> ParseCommandLine(const std::vector<std::string>& args,
                                                        const Environment& env);

// Top-level usage text.
std::string MainUsage();

}  // namespace kiln::cli
