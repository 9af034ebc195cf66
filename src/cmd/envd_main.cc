// kiln-envd: the in-sandbox agent. Flags, wiring and the event loop only.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "envd/agent.h"
#include "envd/port_forward/port_forwarder.h"
#include "envd/sudo/sudo_client.h"
#include "envd/sudo/sudo_server.h"
#include "http/server.h"

namespace {

struct Flags {
  std::string listen = "0.0.0.0";
  uint16_t port = 49983;
  kiln::log::Level level = kiln::log::Level::kInfo;
  bool json_log = false;
  // Where the sudo server listens; empty: no sudo server. Default: the standard path when the
  // agent is a sandbox's init (PID 1, root), else none (an agent started on some host must not
  // hand out root to that host's group `sudo`).
  std::optional<std::string> sudo_socket;
  // Expose servers that listen only on loopback at this address (the vm runtime: the guest's
  // address, which kilnd's proxy connects to). None: off.
  std::optional<boost::asio::ip::address> forward_localhost;
};

void Usage() {
  std::fprintf(stderr,
               "usage: kiln-envd [--listen ADDR] [--port PORT] [--log-level debug|info|warn|error]"
               " [--json-log] [--sudo-socket PATH | --no-sudo] [--forward-localhost ADDR]"
               " [--version]\n"
               "  --forward-localhost ADDR  relay connections to ADDR:PORT to a server that\n"
               "      listens only on 127.0.0.1:PORT or [::1]:PORT (rescanned every 500 ms;\n"
               "      the vm runtime passes the guest's address). Off by default.\n");
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
    } else if (a == "--sudo-socket") {
      const char* v = value();
      if (!v || *v == 0) return false;
      f.sudo_socket = v;
    } else if (a == "--forward-localhost") {
      const char* v = value();
      if (!v) return false;
      boost::system::error_code ec;
      auto address = boost::asio::ip::make_address(v, ec);
      if (ec || address.is_unspecified() || address.is_multicast()) return false;
      f.forward_localhost = address;
    } else if (a == "--no-sudo") {
      f.sudo_socket = "";
    } else if (a == "--version") {
      std::printf("%s\n", std::string(kiln::envd::kEnvdVersion).c_str());
      std::exit(0);
    } else {
      return false;
    }
  }
  return true;
}

// kiln-envd is also the sandbox's `sudo` (/usr/local/bin/sudo links to it).
bool CalledAsSudo(const char* argv0) {
  std::string_view name = argv0 != nullptr ? argv0 : "";
  if (size_t slash = name.rfind('/'); slash != std::string_view::npos) {
    name.remove_prefix(slash + 1);
  }
  return name == "sudo";
}

std::string SudoSocketPath(const Flags& flags) {
  if (flags.sudo_socket) return *flags.sudo_socket;
  return getpid() == 1 && geteuid() == 0 ? kiln::envd::sudo::kDefaultSocketPath : "";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 0 && CalledAsSudo(argv[0])) {
    kiln::envd::sudo::SudoClientConfig config;
    config.agent_version = std::string(kiln::envd::kEnvdVersion);
    return kiln::envd::sudo::RunSudoClient(std::vector<std::string>(argv + 1, argv + argc), config);
  }
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
  std::unique_ptr<kiln::envd::sudo::SudoServer> sudo;
  if (std::string path = SudoSocketPath(flags); !path.empty()) {
    kiln::envd::sudo::SudoServerOptions options;
    options.socket_path = path;
    auto started = kiln::envd::sudo::SudoServer::Start(io, agent.reaper(), std::move(options));
    if (started) {
      sudo = std::move(*started);
    } else {
      // The agent is still useful without sudo: say why, keep going.
      KILN_LOG(Error, "sudo server not started", {"error", started.error().message()});
    }
  }
  std::unique_ptr<kiln::envd::port_forward::PortForwarder> forwarder;
  if (flags.forward_localhost) {
    kiln::envd::port_forward::PortForwarderOptions options;
    options.forward_address = *flags.forward_localhost;
    options.excluded_ports = {server.port()};
    forwarder = std::make_unique<kiln::envd::port_forward::PortForwarder>(io, std::move(options));
    forwarder->Start();
  }
  boost::asio::signal_set stop(io, SIGINT, SIGTERM);
  stop.async_wait([&](const boost::system::error_code&, int) { io.stop(); });
  KILN_LOG(Info, "kiln-envd listening", {"addr", flags.listen}, {"port", server.port()},
           {"version", std::string(kiln::envd::kEnvdVersion)});
  io.run();
  return 0;
}
