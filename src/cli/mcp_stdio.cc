// kiln mcp on stdio: newline-delimited JSON-RPC on stdin/stdout (see mcp_server.h).

#include <signal.h>

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>

#include "cli/input_reader.h"
#include "cli/mcp_server.h"
#include "http/connect.h"

namespace kiln::cli::mcp {

namespace net = boost::asio;
using nlohmann::json;

namespace {

constexpr size_t kMaxMessage = 64 << 20;
constexpr size_t kReadPiece = 64 * 1024;
// After the session's sandboxes are gone, how long answers still in flight may take.
constexpr std::chrono::seconds kDrain{1};

// What the reader loop and the request coroutines share; kept alive by each of them.
struct StdioState {
  StdioState(net::any_io_executor ex, McpConfig config, int out_fd)
      : session(ex, std::move(config)), out(out_fd), wake(ex) {
    wake.expires_at(net::steady_timer::time_point::max());
  }
  McpSession session;
  int out;
  int in_flight = 0;
  bool output_broken = false;
  bool stopping = false;
  InputReader* reader = nullptr;  // while the reader loop runs
  net::steady_timer wake;         // canceled when in_flight drops
};

void Send(StdioState& st, const json& message) {
  if (st.output_broken) return;
  std::string line = http::connect::Dump(message) + "\n";
  if (!WriteAll(st.out, line)) {
    // The client stopped reading: the session is over.
    st.output_broken = true;
    if (st.reader != nullptr) st.reader->Cancel();
  }
}

json InternalError(const json& id, const std::string& what) {
  return RpcError(id, kInternalError, "Internal error: " + what);
}

http::Task<void> Answer(std::shared_ptr<StdioState> st, std::string line) {
  ParsedRpc parsed = ParseRpc(line);
  std::optional<json> response;
  if (!parsed.message) {
    response = std::move(parsed.error_response);
  } else {
    json id = parsed.message->id;
    std::string thrown;
    try {
      response = co_await st->session.Handle(std::move(*parsed.message));
    } catch (const std::exception& e) {
      thrown = e.what();
    }
    if (!thrown.empty() && !id.is_null()) response = InternalError(id, thrown);
  }
  if (response) Send(*st, *response);
  --st->in_flight;
  st->wake.cancel();
}

void Dispatch(const std::shared_ptr<StdioState>& st, std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
    line.remove_suffix(1);
  }
  while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
  if (line.empty()) return;
  ++st->in_flight;
  auto done = [](std::exception_ptr) {};
  net::co_spawn(st->wake.get_executor(), Answer(st, std::string(line)), std::move(done));
}

json TooLong() {
  return RpcError(nullptr, kParseError, "Parse error: message longer than 64 MiB");
}

http::Task<int> StdioMain(std::shared_ptr<StdioState> st, int in_fd) {
  auto executor = co_await net::this_coro::executor;
  auto opened = InputReader::Open(executor, in_fd);
  if (!opened) {
    PrintError(2, "mcp: stdin: " + opened.error().message());
    co_return 1;
  }
  std::unique_ptr<InputReader> reader = std::move(*opened);
  st->reader = reader.get();
  net::signal_set signals(executor, SIGINT, SIGTERM, SIGHUP);
  auto on_signal = [st](boost::system::error_code ec, int) {
    if (ec || st->stopping) return;
    st->stopping = true;
    if (st->reader != nullptr) st->reader->Cancel();
  };
  signals.async_wait(std::move(on_signal));

  std::string buffer;
  bool discarding = false;
  bool eof = false;
  for (;;) {
    auto data = co_await reader->Read(kReadPiece);
    if (!data) {
      if (data.error().code() != Errc::kCanceled) {
        PrintError(2, "mcp: stdin: " + data.error().message());
      }
      break;
    }
    if (data->empty()) {
      eof = true;
      break;
    }
    buffer += *data;
    size_t start = 0;
    for (;;) {
      size_t nl = buffer.find('\n', start);
      if (nl == std::string::npos) break;
      if (discarding) {
        discarding = false;
      } else {
        Dispatch(st, std::string_view(buffer).substr(start, nl - start));
      }
      start = nl + 1;
    }
    buffer.erase(0, start);
    if (discarding) {
      buffer.clear();
    } else if (buffer.size() > kMaxMessage) {
      Send(*st, TooLong());
      buffer.clear();
      discarding = true;
    }
  }
  if (eof && !discarding) Dispatch(st, buffer);
  st->reader = nullptr;
  reader.reset();

  // End of the session: its sandboxes go first (calls still running in them fail fast), then
  // answers in flight get a moment to be written.
  co_await st->session.Close();
  auto deadline = std::chrono::steady_clock::now() + kDrain;
  net::steady_timer drain(executor);
  while (st->in_flight > 0 && std::chrono::steady_clock::now() < deadline) {
    drain.expires_at(deadline);
    auto on_drain = [st](boost::system::error_code ec) {
      if (!ec) st->wake.cancel();
    };
    drain.async_wait(std::move(on_drain));
    boost::system::error_code ec;
    co_await st->wake.async_wait(net::redirect_error(net::use_awaitable, ec));
    drain.cancel();
  }
  boost::system::error_code ignored;
  signals.cancel(ignored);
  co_return 0;
}

}  // namespace

int ServeStdio(const McpConfig& config, const Io& io) {
  net::io_context loop(1);
  auto state = std::make_shared<StdioState>(loop.get_executor(), config, io.out);
  int status = 1;
  auto done = [&loop, &status](std::exception_ptr e, int s) {
    status = e ? 1 : s;
    // Requests still in flight are abandoned; their coroutines are destroyed with the loop.
    loop.stop();
  };
  net::co_spawn(loop, StdioMain(state, io.in), std::move(done));
  state.reset();
  try {
    loop.run();
  } catch (const std::exception& e) {
    PrintError(io.err, std::string("mcp: internal error: ") + e.what());
    return 1;
  }
  return status;
}

}  // namespace kiln::cli::mcp
