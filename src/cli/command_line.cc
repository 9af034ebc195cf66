#include "cli/command_line.h"

#include <array>
#include <span>

#include "cli/endpoint.h"
#include "cli/flags.h"

namespace kiln::cli {

namespace {

constexpr std::string_view kGlobalFlagsHelp =
    "Global flags:\n"
    "  --api-url URL   kilnd address (env E2B_API_URL; default http://127.0.0.1:3000)\n"
    "  --api-key KEY   API key (env E2B_API_KEY)\n";

constexpr std::string_view kMainUsage =
    "usage: kiln [--api-url URL] [--api-key KEY] <command> [args]\n"
    "\n"
    "Commands:\n"
    "  sandbox create   start a sandbox and print its id\n"
    "  sandbox list     list sandboxes\n"
    "  sandbox info     show one sandbox\n"
    "  sandbox kill     kill sandboxes\n"
    "  sandbox pause    pause a sandbox\n"
    "  sandbox resume   resume a paused sandbox\n"
    "  sandbox exec     run a command in a sandbox\n"
    "  sandbox shell    open an interactive shell in a sandbox\n"
    "  sandbox cp       copy a file into or out of a sandbox\n"
    "  keys create      create an API key (local, needs access to kilnd's data dir)\n"
    "  up               build the templates if needed, then run kilnd\n"
    "  mcp              MCP server for coding agents (stdio, or --http ADDR); kiln mcp --help\n"
    "\n";

constexpr std::string_view kSandboxUsage =
    "usage: kiln sandbox <command> [args]\n"
    "\n"
    "  create [--template NAME] [--timeout SECONDS] [--metadata K=V]... [--env K=V]...\n"
    "         [--no-internet] [--json]\n"
    "  list [--state running,paused] [--metadata K=V]... [--json]\n"
    "  info ID [--json]\n"
    "  kill ID...\n"
    "  pause ID\n"
    "  resume ID [--timeout SECONDS]\n"
    "  exec ID [--user U] [--cwd DIR] [--env K=V]... [--timeout SECONDS] -- CMD [ARG]...\n"
    "  shell ID [--user U] [--cwd DIR]\n"
    "  cp [--user U] SRC DST      one side is ID:/path; '-' is stdin/stdout\n"
    "\n";

constexpr std::string_view kCreateUsage =
    "usage: kiln sandbox create [--template NAME] [--timeout SECONDS] [--metadata K=V]...\n"
    "                           [--env K=V]... [--no-internet] [--json]\n"
    "\n"
    "Starts a sandbox and prints its id (--json: the whole response).\n"
    "  --template NAME     template to start from (default base)\n"
    "  --timeout SECONDS   lifetime before kilnd kills it (default: kilnd's, 300)\n"
    "  --metadata K=V      label, repeatable; filter on it with `list --metadata`\n"
    "  --env K=V           environment variable for every process, repeatable\n"
    "  --no-internet       no outbound network access\n"
    "\n";

constexpr std::string_view kListUsage =
    "usage: kiln sandbox list [--state running,paused] [--metadata K=V]... [--json]\n"
    "\n"
    "Lists sandboxes, newest first (all pages).\n"
    "\n";

constexpr std::string_view kInfoUsage = "usage: kiln sandbox info ID [--json]\n\n";
constexpr std::string_view kKillUsage = "usage: kiln sandbox kill ID...\n\n";
constexpr std::string_view kPauseUsage = "usage: kiln sandbox pause ID\n\n";
constexpr std::string_view kResumeUsage =
    "usage: kiln sandbox resume ID [--timeout SECONDS]\n"
    "\n"
    "Resumes a paused sandbox (a running one is left running). --timeout sets its new\n"
    "lifetime (default 300 s; never shortens a running sandbox's).\n"
    "\n";

constexpr std::string_view kExecUsage =
    "usage: kiln sandbox exec ID [--user U] [--cwd DIR] [--env K=V]... [--timeout SECONDS]\n"
    "                         [--] CMD [ARG]...\n"
    "\n"
    "Runs a command with `bash -l -c` in the sandbox, streams its stdout and stderr, and\n"
    "exits with its exit status (128+N when signal N ended it). One word is run as a bash\n"
    "script (\"ls | wc -l\"); several words are quoted so they arrive as its argv. Stdin is\n"
    "forwarded unless it is a terminal. --timeout kills the command after SECONDS.\n"
    "\n";

constexpr std::string_view kShellUsage =
    "usage: kiln sandbox shell ID [--user U] [--cwd DIR]\n"
    "\n"
    "Opens an interactive login shell on a terminal in the sandbox.\n"
    "\n";

constexpr std::string_view kCopyUsage =
    "usage: kiln sandbox cp [--user U] SRC DST\n"
    "\n"
    "Copies one file. Exactly one of SRC and DST is ID:PATH (a path in sandbox ID, relative\n"
    "paths start at the user's home). A local '-' is stdin or stdout. A DST ending in '/' or\n"
    "naming a directory gets the source's file name.\n"
    "\n";

constexpr std::string_view kKeysUsage =
    "usage: kiln keys create [--data-dir DIR] [--name NAME]\n"
    "\n"
    "Creates an API key in kilnd's store (DIR/kiln.db, default /var/lib/kiln) and prints it\n"
    "once; only its hash is kept. Runs locally, usually as root.\n"
    "\n";

constexpr std::string_view kUpUsage =
    "usage: kiln up [--data-dir DIR] [--listen HOST:PORT] [--template-dir DIR] [--envd PATH]\n"
    "               [--no-build] [kilnd flags...]\n"
    "\n"
    "Builds the base template if it is missing (with a progress display), then runs kilnd\n"
    "in the foreground (defaults: --data-dir /var/lib/kiln, --listen 127.0.0.1:3000). Other\n"
    "flags go to kilnd unchanged; see `kilnd --help`. Needs root.\n"
    "\n";

std::string WithGlobals(std::string_view usage) {
  return std::string(usage) + std::string(kGlobalFlagsHelp);
}

using Parsed = std::expected<CommandLine, UsageError>;

std::unexpected<UsageError> Usage(std::string message, std::string_view usage) {
  return std::unexpected(UsageError{std::move(message), WithGlobals(usage)});
}

// --api-url/--api-key are accepted before and after the command words.
constexpr std::array kGlobalSpecs = {
    FlagSpec{"api-url", true, 0},
    FlagSpec{"api-key", true, 0},
    FlagSpec{"help", false, 'h'},
};

template <size_t N>
std::vector<FlagSpec> WithGlobalSpecs(const std::array<FlagSpec, N>& own) {
  std::vector<FlagSpec> all(own.begin(), own.end());
  all.insert(all.end(), kGlobalSpecs.begin(), kGlobalSpecs.end());
  return all;
}

void ApplyGlobals(const ParsedFlags& f, GlobalOptions& g) {
  if (auto v = f.Get("api-url")) g.api_url = *v;
  if (auto v = f.Get("api-key")) g.api_key = *v;
}

Result<std::map<std::string, std::string>> KeyValues(const ParsedFlags& f, std::string_view name) {
  std::map<std::string, std::string> out;
  for (const auto& kv : f.All(name)) {
    KILN_ASSIGN_OR_RETURN(auto pair, SplitKeyValue(kv, name));
    out[pair.first] = pair.second;
  }
  return out;
}

Result<std::optional<int64_t>> OptionalCount(const ParsedFlags& f, std::string_view name) {
  auto v = f.Get(name);
  if (!v) return std::optional<int64_t>();
  KILN_ASSIGN_OR_RETURN(int64_t n, ParseCount(*v, name));
  return std::optional<int64_t>(n);
}

// Parses the flags of one verb (plus the global ones) into `line.global`.
Result<ParsedFlags> VerbFlags(std::span<const std::string> args, std::span<const FlagSpec> specs,
                              GlobalOptions& global, ParseOptions options = {}) {
  KILN_ASSIGN_OR_RETURN(ParsedFlags f, ParseFlags(args, specs, options));
  ApplyGlobals(f, global);
  return f;
}

Result<CreateCommand> ParseCreate(std::span<const std::string> args, GlobalOptions& g) {
  constexpr std::array specs = {FlagSpec{"template", true, 't'}, FlagSpec{"timeout", true, 0},
                                FlagSpec{"metadata", true, 'm'}, FlagSpec{"env", true, 'e'},
                                FlagSpec{"no-internet", false, 0}, FlagSpec{"json", false, 0}};
  KILN_ASSIGN_OR_RETURN(ParsedFlags f, VerbFlags(args, WithGlobalSpecs(specs), g));
  if (!f.positional.empty() || !f.rest.empty()) {
    return Fail(Errc::kInvalidArgument, "unexpected argument");
  }
  CreateCommand c;
  if (auto t = f.Get("template")) {
    if (t->empty()) return Fail(Errc::kInvalidArgument, "--template must not be empty");
    c.template_id = *t;
  }
  KILN_ASSIGN_OR_RETURN(c.timeout_s, OptionalCount(f, "timeout"));
  KILN_ASSIGN_OR_RETURN(c.metadata, KeyValues(f, "metadata"));
  KILN_ASSIGN_OR_RETURN(c.envs, KeyValues(f, "env"));
  c.no_internet = f.Has("no-internet");
  c.json = f.Has("json");
  return c;
}

Result<ListCommand> ParseList(std::span<const std::string> args, GlobalOptions& g) {
  constexpr std::array specs = {FlagSpec{"state", true, 's'}, FlagSpec{"metadata", true, 'm'},
                                FlagSpec{"json", false, 0}};
  KILN_ASSIGN_OR_RETURN(ParsedFlags f, VerbFlags(args, WithGlobalSpecs(specs), g));
  if (!f.positional.empty() || !f.rest.empty()) {
    return Fail(Errc::kInvalidArgument, "unexpected argument");
  }
  ListCommand c;
  for (const auto& value : f.All("state")) {
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string s(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      if (s.empty()) continue;
      if (s != "running" && s != "paused") {
        return Fail(Errc::kInvalidArgument, "--state takes running and/or paused, not \"" + s +
                                                "\"");
      }
      c.states.push_back(s);
    }
  }
  KILN_ASSIGN_OR_RETURN(c.metadata, KeyValues(f, "metadata"));
  c.json = f.Has("json");
  return c;
}

Result<std::string> OneId(const ParsedFlags& f) {
  if (f.positional.size() != 1 || !f.rest.empty()) {
    return Fail(Errc::kInvalidArgument,
                f.positional.empty() ? "missing sandbox ID" : "expected exactly one sandbox ID");
  }
  if (f.positional[0].empty()) return Fail(Errc::kInvalidArgument, "empty sandbox ID");
  return f.positional[0];
}

Result<ExecCommand> ParseExec(std::span<const std::string> args, GlobalOptions& g) {
  constexpr std::array specs = {FlagSpec{"user", true, 'u'}, FlagSpec{"cwd", true, 'w'},
                                FlagSpec{"env", true, 'e'}, FlagSpec{"timeout", true, 0}};
  // The sandbox id, then the command: its own flags ("ls -la") are not ours.
  KILN_ASSIGN_OR_RETURN(ParsedFlags f,
                        VerbFlags(args, WithGlobalSpecs(specs), g, ParseOptions{1}));
  if (f.positional.empty()) return Fail(Errc::kInvalidArgument, "missing sandbox ID");
  ExecCommand c;
  c.id = f.positional[0];
  c.command = f.rest;
  if (c.command.empty()) return Fail(Errc::kInvalidArgument, "missing command");
  c.user = f.Get("user");
  c.cwd = f.Get("cwd");
  KILN_ASSIGN_OR_RETURN(c.envs, KeyValues(f, "env"));
  KILN_ASSIGN_OR_RETURN(c.timeout_s, OptionalCount(f, "timeout"));
  return c;
}

// `kiln sandbox VERB ARGS`; `usage` is set to the verb's usage for errors.
Result<Command> ParseSandboxVerb(std::string_view verb, std::span<const std::string> args,
                                 GlobalOptions& g) {
  if (verb == "create") return ParseCreate(args, g);
  if (verb == "list" || verb == "ls") return ParseList(args, g);
  if (verb == "exec") return ParseExec(args, g);
  if (verb == "kill" || verb == "rm") {
    KILN_ASSIGN_OR_RETURN(ParsedFlags f, VerbFlags(args, kGlobalSpecs, g));
    if (f.positional.empty()) return Fail(Errc::kInvalidArgument, "missing sandbox ID");
    f.positional.insert(f.positional.end(), f.rest.begin(), f.rest.end());
    return KillCommand{f.positional};
  }
  if (verb == "pause") {
    KILN_ASSIGN_OR_RETURN(ParsedFlags f, VerbFlags(args, kGlobalSpecs, g));
    KILN_ASSIGN_OR_RETURN(std::string id, OneId(f));
    return PauseCommand{id};
  }
  if (verb == "resume") {
    constexpr std::array specs = {FlagSpec{"timeout", true, 0}};
    KILN_ASSIGN_OR_RETURN(ParsedFlags f, VerbFlags(args, WithGlobalSpecs(specs), g));
    ResumeCommand c;
    KILN_ASSIGN_OR_RETURN(c.id, OneId(f));
    KILN_ASSIGN_OR_RETURN(c.timeout_s, OptionalCount(f, "timeout"));
    return c;
  }
  if (verb == "info") {
    constexpr std::array specs = {FlagSpec{"json", false, 0}};
    KILN_ASSIGN_OR_RETURN(ParsedFlags f, VerbFlags(args, WithGlobalSpecs(specs), g));
    InfoCommand c;
    KILN_ASSIGN_OR_RETURN(c.id, OneId(f));
    c.json = f.Has("json");
    return c;
  }
  if (verb == "shell") {
    constexpr std::array specs = {FlagSpec{"user", true, 'u'}, FlagSpec{"cwd", true, 'w'}};
    KILN_ASSIGN_OR_RETURN(ParsedFlags f, VerbFlags(args, WithGlobalSpecs(specs), g));
    ShellCommand c;
    KILN_ASSIGN_OR_RETURN(c.id, OneId(f));
    c.user = f.Get("user");
    c.cwd = f.Get("cwd");
    return c;
  }
  if (verb == "cp") {
    constexpr std::array specs = {FlagSpec{"user", true, 'u'}};
    KILN_ASSIGN_OR_RETURN(ParsedFlags f, VerbFlags(args, WithGlobalSpecs(specs), g));
    f.positional.insert(f.positional.end(), f.rest.begin(), f.rest.end());
    if (f.positional.size() != 2) return Fail(Errc::kInvalidArgument, "cp wants SRC and DST");
    return CopyCommand{f.positional[0], f.positional[1], f.Get("user")};
  }
  return Fail(Errc::kNotFound, "unknown command \"sandbox " + std::string(verb) + "\"");
}

std::string_view SandboxVerbUsage(std::string_view verb) {
  if (verb == "create") return kCreateUsage;
  if (verb == "list" || verb == "ls") return kListUsage;
  if (verb == "info") return kInfoUsage;
  if (verb == "kill" || verb == "rm") return kKillUsage;
  if (verb == "pause") return kPauseUsage;
  if (verb == "resume") return kResumeUsage;
  if (verb == "exec") return kExecUsage;
  if (verb == "shell") return kShellUsage;
  if (verb == "cp") return kCopyUsage;
  return kSandboxUsage;
}

bool WantsHelp(std::span<const std::string> args, bool stop_at_dashdash) {
  for (const auto& a : args) {
    if (stop_at_dashdash && a == "--") return false;
    if (a == "--help" || a == "-h") return true;
  }
  return false;
}

Parsed ParseSandbox(std::span<const std::string> args, CommandLine line) {
  if (args.empty()) return Usage("missing sandbox command", kSandboxUsage);
  std::string_view verb = args[0];
  if (verb == "--help" || verb == "-h" || verb == "help") {
    line.command = HelpCommand{WithGlobals(kSandboxUsage)};
    return line;
  }
  std::string_view usage = SandboxVerbUsage(verb);
  std::span<const std::string> rest = args.subspan(1);
  // For exec, a --help after the sandbox id belongs to the command.
  bool exec = verb == "exec";
  if (WantsHelp(exec ? rest.subspan(0, std::min<size_t>(rest.size(), 1)) : rest, true)) {
    line.command = HelpCommand{WithGlobals(usage)};
    return line;
  }
  auto cmd = ParseSandboxVerb(verb, rest, line.global);
  if (!cmd) return Usage(cmd.error().message(), usage);
  line.command = std::move(*cmd);
  return line;
}

Parsed ParseKeys(std::span<const std::string> args, CommandLine line) {
  if (args.empty()) return Usage("missing keys command", kKeysUsage);
  if (WantsHelp(args, false) || args[0] == "help") {
    line.command = HelpCommand{std::string(kKeysUsage)};
    return line;
  }
  if (args[0] != "create") return Usage("unknown command \"keys " + args[0] + "\"", kKeysUsage);
  constexpr std::array specs = {FlagSpec{"data-dir", true, 0}, FlagSpec{"name", true, 0}};
  auto f = ParseFlags(args.subspan(1), specs);
  if (!f) return Usage(f.error().message(), kKeysUsage);
  if (!f->positional.empty() || !f->rest.empty()) return Usage("unexpected argument", kKeysUsage);
  KeysCreateCommand c;
  if (auto v = f->Get("data-dir")) c.data_dir = *v;
  if (auto v = f->Get("name")) c.name = *v;
  if (c.data_dir.empty() || c.name.empty()) {
    return Usage("--data-dir and --name must not be empty", kKeysUsage);
  }
  line.command = c;
  return line;
}

// kilnd's flags are passed through, so only ours are looked at; "--x=v" and "--x v" both work.
Parsed ParseUp(std::span<const std::string> args, CommandLine line) {
  UpCommand c;
  std::vector<std::string> extra;
  std::optional<std::string> template_dir;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "--help" || a == "-h") {
      line.command = HelpCommand{std::string(kUpUsage)};
      return line;
    }
    std::string_view name = a;
    std::optional<std::string> value;
    if (size_t eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
      name = a.substr(0, eq);
      value = std::string(a.substr(eq + 1));
    }
    std::string* target = nullptr;
    if (name == "--data-dir") target = &c.data_dir;
    if (name == "--listen") target = &c.listen;
    if (name == "--template-dir") target = &template_dir.emplace();
    if (name == "--envd") target = &c.envd.emplace();
    if (target == nullptr) {
      if (a == "--no-build") c.build = false;
      extra.emplace_back(a);
      continue;
    }
    if (!value) {
      if (i + 1 >= args.size()) return Usage("flag " + std::string(name) + " needs a value", kUpUsage);
      value = args[++i];
    }
    if (value->empty()) return Usage("flag " + std::string(name) + " needs a value", kUpUsage);
    *target = *value;
  }
  c.template_dir = template_dir.value_or(c.data_dir + "/templates");
  c.kilnd_args = {"--data-dir", c.data_dir, "--listen", c.listen};
  if (template_dir) c.kilnd_args.insert(c.kilnd_args.end(), {"--template-dir", *template_dir});
  if (c.envd) c.kilnd_args.insert(c.kilnd_args.end(), {"--envd", *c.envd});
  c.kilnd_args.insert(c.kilnd_args.end(), extra.begin(), extra.end());
  line.command = std::move(c);
  return line;
}

}  // namespace

std::string MainUsage() { return WithGlobals(kMainUsage); }

std::expected<CommandLine, UsageError> ParseCommandLine(const std::vector<std::string>& args,
                                                        const Environment& env) {
  CommandLine line{GlobalOptions{}, HelpCommand{MainUsage()}};
  line.global.api_url = env.Get("E2B_API_URL").value_or(std::string(kDefaultApiUrl));
  if (line.global.api_url.empty()) line.global.api_url = std::string(kDefaultApiUrl);
  line.global.api_key = env.Get("E2B_API_KEY").value_or("");
  // Global flags before the command word.
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") return line;
    if (!a.starts_with("-")) break;
    size_t count = a.find('=') == std::string::npos ? std::min<size_t>(2, args.size() - i) : 1;
    auto f = ParseFlags(std::span(args).subspan(i, count), kGlobalSpecs);
    if (!f) return Usage(f.error().message(), kMainUsage);
    if (!f->positional.empty()) return Usage("unexpected argument " + args[i + 1], kMainUsage);
    ApplyGlobals(*f, line.global);
    i += count - 1;
  }
  if (i >= args.size()) return Usage("missing command", kMainUsage);
  std::string_view word = args[i];
  auto rest = std::span(args).subspan(i + 1);
  if (word == "help") return line;
  if (word == "sandbox" || word == "sbx") return ParseSandbox(rest, std::move(line));
  if (word == "keys") return ParseKeys(rest, std::move(line));
  if (word == "up") return ParseUp(rest, std::move(line));
  return Usage("unknown command \"" + std::string(word) + "\"", kMainUsage);
}

}  // namespace kiln::cli
