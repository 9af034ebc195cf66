// kiln-envd: the in-sandbox agent. Flags, wiring and the event loop only.
#include <signal.h>
#include <sys/stat.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "base/log.h"
#include "envd/agent.h"
#include "http/server.h"

namespace {

struct Flags {
  std::string listen = "0.0.0.0";
  uint16_t port = 49983;
  kiln::log::Level level = kiln::log::Level::kInfo;
  bool json_log = false;
};

void Usage() {
  std::fprintf(stderr,
               "usage: kiln-envd [--listen ADDR] [--port PORT] [--log-level debug|info|warn|error]"
               " [--json-log] [--version]\n");
}

bool ParseFlags(int argc, char** argv, Flags& f) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--listen") {
      const char* v = value();
      if (!v) return false;
      f.listen = v;
    } else if (a == "--port") {
      const char* v = value();
      if (!v) return false;
      unsigned p = 0;
      auto [ptr, ec] = std::from_chars(v, v + std::strlen(v), p);
      if (ec != std::errc() || *ptr != 0 || p > 65535) return false;
      f.port = static_cast<uint16_t>(p);
    } else if (a == "--log-level") {
      const char* v = value();
      if (!v) return false;
      auto level = kiln::log::ParseLevel(v);
      if (!level) return false;
      f.level = *level;
    } else if (a == "--json-log") {
      f.json_log = true;
    } else if (a == "--version") {
      std::printf("%s\n", std::string(kiln::envd::kEnvdVersion).c_str());
      std::exit(0);
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, flags)) {
    Usage();
    return 2;
  }
  kiln::log::SetMinLevel(flags.level);
  kiln::log::SetJson(flags.json_log);
  signal(SIGPIPE, SIG_IGN);
  umask(022);

  boost::asio::io_context io(1);
  kiln::envd::Agent agent(io, kiln::envd::AgentState{});
  kiln::http::Server server(io, agent.router(), kiln::http::ServerOptions{});
  if (auto st = server.Listen(flags.listen, flags.port); !st) {
    KILN_LOG(Error, "cannot start", {"error", st.error().message()});
    return 1;
  }
  server.Start();
  boost::asio::signal_set stop(io, SIGINT, SIGTERM);
  stop.async_wait([&](const boost::system::error_code&, int) { io.stop(); });
  KILN_LOG(Info, "kiln-envd listening", {"addr", flags.listen}, {"port", server.port()},
           {"version", std::string(kiln::envd::kEnvdVersion)});
  io.run();
  return 0;
}
