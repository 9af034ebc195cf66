#include "cli/mcp_command.h"

#include <array>
#include <charconv>

#include "cli/endpoint.h"
#include "cli/flags.h"

namespace kiln::cli::mcp {

namespace {

constexpr std::string_view kUsage =
    "usage: kiln mcp [--http HOST:PORT] [--api-url URL] [--api-key KEY] [--template NAME]\n"
    "                [--sandbox-timeout SECONDS] [--session-idle SECONDS] [--no-host-files]\n"
    "\n"
    "Serves kiln sandboxes to coding agents (Claude Code, Cursor, ...) as MCP tools:\n"
    "create_sandbox, list_sandboxes, kill_sandbox, run_code, run_command, read_file,\n"
    "write_file, list_dir, upload, download. Speaks MCP on stdin/stdout unless --http is\n"
    "given. Sandboxes a session creates are killed when it ends (stdin closed, HTTP session\n"
    "deleted or idle), except those created with keep: true.\n"
    "\n"
    "  --http HOST:PORT        serve the streamable HTTP transport at http://HOST:PORT/mcp\n"
    "                          instead of stdio (port 0: any free port; the address is\n"
    "                          printed on stdout)\n"
    "  --api-url URL           kilnd (env KILN_API_URL or E2B_API_URL; default\n"
    "                          http://127.0.0.1:3000)\n"
    "  --api-key KEY           API key (env KILN_API_KEY or E2B_API_KEY)\n"
    "  --template NAME         template of each session's default sandbox (default\n"
    "                          code-interpreter-v1, falling back to base when kilnd lacks it)\n"
    "  --sandbox-timeout SECS  lifetime of the sandboxes the server creates (default 1800)\n"
    "  --session-idle SECS     --http: end sessions idle this long (default 3600)\n"
    "  --no-host-files         do not offer upload and download (host file access)\n"
    "\n";

constexpr std::array kSpecs = {
    FlagSpec{"api-url", true, 0},         FlagSpec{"api-key", true, 0},
    FlagSpec{"http", true, 0},            FlagSpec{"template", true, 0},
    FlagSpec{"sandbox-timeout", true, 0}, FlagSpec{"session-idle", true, 0},
    FlagSpec{"no-host-files", false, 0},  FlagSpec{"help", false, 'h'},
};

std::optional<std::string> FirstSet(const Environment& env, const char* a, const char* b) {
  for (const char* name : {a, b}) {
    auto v = env.Get(name);
    if (v && !v->empty()) return v;
  }
  return std::nullopt;
}

Result<HttpOptions> ParseListen(const std::string& text) {
  HttpOptions o;
  std::string_view host;
  std::string_view port;
  std::string_view t = text;
  if (t.starts_with('[')) {
    size_t close = t.find(']');
    if (close == std::string_view::npos || close + 1 >= t.size() || t[close + 1] != ':') {
      return Fail(Errc::kInvalidArgument, "--http wants HOST:PORT, got \"" + text + "\"");
    }
    host = t.substr(1, close - 1);
    port = t.substr(close + 2);
  } else {
    size_t colon = t.rfind(':');
    if (colon == std::string_view::npos) {
      return Fail(Errc::kInvalidArgument, "--http wants HOST:PORT, got \"" + text + "\"");
    }
    host = t.substr(0, colon);
    port = t.substr(colon + 1);
  }
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p > 65535) {
    return Fail(Errc::kInvalidArgument, "--http: bad port in \"" + text + "\"");
  }
  o.host = host.empty() ? "127.0.0.1" : std::string(host);
  o.port = static_cast<uint16_t>(p);
  return o;
}

Result<int64_t> Seconds(const ParsedFlags& f, std::string_view name, int64_t fallback) {
  auto v = f.Get(name);
  if (!v) return fallback;
  KILN_ASSIGN_OR_RETURN(int64_t n, ParseCount(*v, name));
  if (n <= 0) return Fail(Errc::kInvalidArgument, "--" + std::string(name) + " must be positive");
  return n;
}

bool TakesValue(std::string_view arg) { return arg == "--api-url" || arg == "--api-key"; }

}  // namespace

std::string McpUsage() { return std::string(kUsage); }

bool IsMcpCommand(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (TakesValue(a)) {
      ++i;
      continue;
    }
    if (a.starts_with("--api-url=") || a.starts_with("--api-key=")) continue;
    return a == "mcp";
  }
  return false;
}

Result<McpCommand> ParseMcpCommand(const std::vector<std::string>& args, const Environment& env) {
  std::vector<std::string> rest;
  bool seen_word = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (!seen_word && args[i] == "mcp" && (i == 0 || !TakesValue(args[i - 1]))) {
      seen_word = true;
      continue;
    }
    rest.push_back(args[i]);
  }
  KILN_ASSIGN_OR_RETURN(ParsedFlags f, ParseFlags(rest, kSpecs));
  McpCommand cmd;
  if (f.Has("help")) {
    cmd.help = true;
    return cmd;
  }
  if (!f.positional.empty() || !f.rest.empty()) {
    std::string extra = f.positional.empty() ? f.rest.front() : f.positional.front();
    return Fail(Errc::kInvalidArgument, "unexpected argument \"" + extra + "\"");
  }
  std::string url = f.Get("api-url")
                        .or_else([&] { return FirstSet(env, "KILN_API_URL", "E2B_API_URL"); })
                        .value_or(std::string(kDefaultApiUrl));
  KILN_ASSIGN_OR_RETURN(cmd.config.endpoint, ParseEndpoint(url));
  cmd.config.api_key = f.Get("api-key")
                           .or_else([&] { return FirstSet(env, "KILN_API_KEY", "E2B_API_KEY"); })
                           .value_or("");
  if (auto t = f.Get("template")) {
    if (t->empty()) return Fail(Errc::kInvalidArgument, "--template must not be empty");
    cmd.config.tools.default_template = *t;
    cmd.config.tools.fallback_template = *t;  // asked for by name: no silent fallback
  }
  KILN_ASSIGN_OR_RETURN(cmd.config.tools.sandbox_timeout_s, Seconds(f, "sandbox-timeout", 1800));
  cmd.config.tools.host_files = !f.Has("no-host-files");
  if (auto listen = f.Get("http")) {
    KILN_ASSIGN_OR_RETURN(HttpOptions http, ParseListen(*listen));
    KILN_ASSIGN_OR_RETURN(int64_t idle, Seconds(f, "session-idle", 3600));
    http.session_idle = std::chrono::seconds(idle);
    cmd.http = http;
  } else if (f.Has("session-idle")) {
    return Fail(Errc::kInvalidArgument, "--session-idle applies to --http only");
  }
  return cmd;
}

int RunMcp(const std::vector<std::string>& args, const Io& io, const Environment& env) {
  auto cmd = ParseMcpCommand(args, env);
  if (!cmd) {
    PrintError(io.err, cmd.error().message());
    (void)WriteAll(io.err, "\n" + McpUsage());
    return 2;
  }
  if (cmd->help) return WriteAll(io.out, McpUsage()) ? 0 : 1;
  if (cmd->http) return ServeHttp(cmd->config, *cmd->http, io);
  (void)WriteAll(io.err, "kiln mcp: serving MCP on stdio; kilnd at " + cmd->config.endpoint.url + "\n");
  return ServeStdio(cmd->config, io);
}

}  // namespace kiln::cli::mcp
