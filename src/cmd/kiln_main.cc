// kiln: the command-line client. Wiring only: src/cli parses the command line and runs the
// remote commands; the two local commands that need kilnd's own libraries (`keys create`
// opens kilnd's store, `up` builds the base template and then becomes kilnd) are wired here,
// because src/cli may not depend on kilnd.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cli/progress.h"
#include "kilnd/orchestrator/api_keys.h"
#include "kilnd/orchestrator/store.h"
#include "kilnd/template/template_store.h"

namespace {

namespace fs = std::filesystem;
using kiln::cli::Io;
using kiln::cli::PrintError;
using kiln::cli::WriteAll;

fs::path SelfDir() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path(".") : self.parent_path();
}

int KeysCreate(const kiln::cli::KeysCreateCommand& cmd, const Io& io) {
  fs::path dir = cmd.data_dir;
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) {
      PrintError(io.err, "create " + dir.string() + ": " + ec.message());
      return 1;
    }
    chmod(dir.c_str(), 0700);  // as kilnd makes it: the store holds sandbox tokens
  }
  auto store = kiln::kilnd::Store::Open(dir / "kiln.db");
  if (!store) {
    PrintError(io.err, store.error().message() + (geteuid() != 0 ? " (run as root?)" : ""));
    return 1;
  }
  kiln::kilnd::ApiKeys keys(**store);
  if (auto st = keys.Load(); !st) {
    PrintError(io.err, st.error().message());
    return 1;
  }
  auto key = keys.Create(cmd.name);
  if (!key) {
    PrintError(io.err, key.error().message());
    return 1;
  }
  // The key alone on stdout, so that E2B_API_KEY=$(kiln keys create) works.
  (void)WriteAll(io.err, "kiln: created API key \"" + cmd.name +
                             "\"; it is shown only now (kilnd keeps its hash)\n");
  return WriteAll(io.out, *key + "\n") ? 0 : 1;
}

// The templates kilnd builds by default, each with a progress bar (kilnd would build them
// too, but only with log lines).
int BuildTemplates(const kiln::cli::UpCommand& cmd, const fs::path& envd, const Io& io) {
  kiln::kilnd::tmpl::TemplateStore store(cmd.template_dir);
  for (const char* name : {"base", "code-interpreter-v1"}) {
    if (store.Get(name)) continue;
    bool tty = isatty(io.err) != 0;
    kiln::cli::ProgressDisplay display(io.err, tty, kiln::cli::TerminalWidth(io.err),
                                       std::string("building template ") + name);
    auto built = store.EnsureBuilt(name, envd, [&](const kiln::kilnd::tmpl::BuildProgress& p) {
      display.Update(p.phase, p.detail, p.percent);
    });
    if (!built) {
      display.Finish("");
      PrintError(io.err, std::string("build template ") + name + ": " + built.error().message());
      return 1;
    }
    display.Finish(std::string("kiln: template ") + name + " ready in " + built->rootfs.string());
  }
  return 0;
}

int Up(const kiln::cli::UpCommand& cmd, const Io& io) {
  if (geteuid() != 0) {
    PrintError(io.err, "up must run as root (kilnd uses namespaces, cgroups and nftables)");
    return 1;
  }
  fs::path self = SelfDir();
  fs::path kilnd = self / "kilnd";
  fs::path envd = cmd.envd ? fs::path(*cmd.envd) : self / "kiln-envd";
  std::error_code ec;
  for (const fs::path& p : {kilnd, envd}) {
    if (!fs::exists(p, ec)) {
      PrintError(io.err, p.string() + " not found (it is installed beside kiln)");
      return 1;
    }
  }
  if (cmd.build) {
    if (int st = BuildTemplates(cmd, envd, io); st != 0) return st;
  }
  std::vector<std::string> args = {"kilnd"};
  args.insert(args.end(), cmd.kilnd_args.begin(), cmd.kilnd_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv(kilnd.c_str(), argv.data());
  PrintError(io.err, "exec " + kilnd.string() + ": " + std::string(strerror(errno)));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Writes to a closed pipe (`kiln ... | head`) fail with EPIPE instead of killing us.
  signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  kiln::cli::LocalCommands local;
  local.keys_create = KeysCreate;
  local.up = Up;
  return kiln::cli::Run(args, Io{}, kiln::cli::Environment::Process(), local);
}
