// kiln-interp: the code-interpreter server inside code-interpreter sandboxes (port 49999).
// Flags, wiring and the event loop only; the work is in src/interp.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <charconv>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"
#include "http/server.h"
#include "interp/contexts.h"
#include "interp/embedded_files.h"
#include "interp/server.h"

namespace {

using namespace kiln;

struct Flags {
  std::string listen = "0.0.0.0";
  uint16_t port = 49999;
  uint16_t envd_port = 49983;
  std::string runtime_dir = "/run/kiln-interp";
  std::string user = "user";
  std::string cwd = "/home/user";
  std::string kernel_log;  // empty: kernels' own output is dropped
  bool defaults = true;
  bool stock_kernel = false;
  log::Level level = log::Level::kInfo;
};

void Usage() {
  std::fprintf(stderr,
               "usage: kiln-interp [--listen ADDR] [--port PORT] [--envd-port PORT]\n"
               "                   [--runtime-dir DIR] [--user NAME] [--cwd DIR] [--kernel-log FILE]\n"
               "                   [--no-default-contexts] [--stock-kernel]\n"
               "                   [--log-level debug|info|warn|error]\n"
               "  Serves E2B's code-interpreter API (/execute, /contexts) on PORT (49999), running\n"
               "  code in Jupyter kernels as NAME (user; \"\" = kiln-interp's own user).\n"
               "  --stock-kernel starts python kernels with `python3 -m ipykernel_launcher` instead\n"
               "  of kiln_ipykernel.py (the same ipykernel without its per-cell waits).\n");
}

bool ParsePort(const char* s, uint16_t& out) {
  if (s == nullptr) return false;
  std::string_view v = s;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc() && p == v.data() + v.size();
}

bool ParseFlags(int argc, char** argv, Flags& f) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    auto str = [&](std::string& out) {
      const char* v = value();
      if (v == nullptr) return false;
      out = v;
      return true;
    };
    if (a == "--listen") {
      if (!str(f.listen)) return false;
    } else if (a == "--port") {
      if (!ParsePort(value(), f.port)) return false;
    } else if (a == "--envd-port") {
      if (!ParsePort(value(), f.envd_port)) return false;
    } else if (a == "--runtime-dir") {
      if (!str(f.runtime_dir)) return false;
    } else if (a == "--user") {
      if (!str(f.user)) return false;
    } else if (a == "--cwd") {
      if (!str(f.cwd)) return false;
    } else if (a == "--kernel-log") {
      if (!str(f.kernel_log)) return false;
    } else if (a == "--no-default-contexts") {
      f.defaults = false;
    } else if (a == "--stock-kernel") {
      f.stock_kernel = true;
    } else if (a == "--log-level") {
      const char* v = value();
      auto level = v ? log::ParseLevel(v) : std::nullopt;
      if (!level) return false;
      f.level = *level;
    } else {
      return false;
    }
  }
  return true;
}

// What every kernel starts with (the user's HOME/USER and PYTHONPATH are added per kernel).
std::vector<std::string> KernelEnv() {
  return {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "LANG=C.UTF-8",
      "SHELL=/bin/bash",
      // Figures appear at the end of a cell as PNG, as in Jupyter.
      "MPLBACKEND=module://matplotlib_inline.backend_inline",
      // Debian marks its Python as externally managed; `!pip install` should just work here.
      "PIP_BREAK_SYSTEM_PACKAGES=1",
      // debugpy (an ipykernel dependency) warns about frozen modules on every start.
      "PYDEVD_DISABLE_FILE_VALIDATION=1",
      "JPY_SESSION_NAME=kiln",
  };
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, flags)) {
    Usage();
    return 2;
  }
  log::SetMinLevel(flags.level);
  signal(SIGPIPE, SIG_IGN);

  std::filesystem::path runtime_dir = flags.runtime_dir;
  std::error_code ec;
  std::filesystem::create_directories(runtime_dir, ec);
  chmod(runtime_dir.c_str(), 0711);  // kernels traverse it to their own directories
  if (auto st = interp::WritePythonFiles(runtime_dir / "python"); !st) {
    KILN_LOG(Error, "kiln-interp cannot start", {"error", st.error().message()});
    return 1;
  }
  UniqueFd kernel_log;
  if (!flags.kernel_log.empty()) {
    kernel_log.reset(open(flags.kernel_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!kernel_log) KILN_LOG(Warn, "no kernel log", {"path", flags.kernel_log});
  }

  boost::asio::io_context io(1);
  interp::ContextOptions context_options;
  context_options.runtime_dir = runtime_dir;
  context_options.python_dir = runtime_dir / "python";
  context_options.python_launcher =
      flags.stock_kernel ? interp::PythonLauncher::kStock : interp::PythonLauncher::kFast;
  context_options.user = flags.user;
  context_options.default_cwd = flags.cwd;
  context_options.env = KernelEnv();
  context_options.kernel_log_fd = kernel_log ? kernel_log.get() : -1;
  interp::Contexts contexts(io.get_executor(), context_options);
  interp::ServerOptions server_options;
  server_options.envd_port = flags.envd_port;
  interp::InterpServer api(io.get_executor(), contexts, server_options);

  http::ServerOptions http_options;
  http_options.idle_timeout = std::chrono::seconds(640);
  http::Server server(
      io, [&api](http::Exchange& ex) -> http::Task<void> { return api.Handle(ex); }, http_options);
  if (auto st = server.Listen(flags.listen, flags.port); !st) {
    KILN_LOG(Error, "kiln-interp cannot listen", {"error", st.error().message()});
    return 1;
  }
  server.Start();
  KILN_LOG(Info, "kiln-interp listening", {"addr", flags.listen}, {"port", server.port()});
  if (flags.defaults) boost::asio::co_spawn(io, api.StartDefaultsLogged(), boost::asio::detached);
  boost::asio::co_spawn(io, api.WatchClock(), boost::asio::detached);
  boost::asio::signal_set stop(io, SIGINT, SIGTERM);
  stop.async_wait([&io](const boost::system::error_code&, int) { io.stop(); });
  io.run();
  return 0;
}
