#pragma once

// A client of envd's process.Process service inside one sandbox, through kilnd: one Start
// stream (its own connection) plus unary calls (SendInput, CloseStdin, Update, SendSignal)
// on a second connection. Not thread-safe; lives on one io_context. Unary calls may overlap
// (an input pump and a signal handler): a call that finds the kept connection busy uses a
// fresh one, so requests on one connection never interleave.

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "cli/envelope.h"
#include "cli/kilnd_client.h"
#include "cli/process_wire.h"
#include "http/client.h"

namespace kiln::cli {

class ProcessClient {
 public:
  ProcessClient(KilndClient& kilnd, SandboxAccess sandbox, std::optional<std::string> user);

  // Sends process.Process/Start and reads the response head. `timeout` becomes
  // Connect-Timeout-Ms, which envd also applies to the process's lifetime; nullopt: none.
  // A non-200 answer is an Error "<status>: <message>".
  http::Task<Status> Start(const nlohmann::json& request,
                           std::optional<std::chrono::milliseconds> timeout);

  // The next event of the Start stream; nullopt after a successful end-stream frame. A stream
  // that ends with an error frame returns it (see ParseEndStream); one that stops without an
  // end-stream frame is kUnavailable.
  http::Task<Result<std::optional<ProcessEvent>>> Next();

  // process.Process/<method> with a JSON request; the reply is ignored.
  http::Task<Status> Unary(std::string_view method, nlohmann::json request);

 private:
  http::Task<Result<http::ClientResponse>> UnaryOn(http::ClientConnection& conn,
                                                   std::string_view method,
                                                   const std::string& body);

  KilndClient& kilnd_;
  SandboxAccess sandbox_;
  std::optional<std::string> user_;
  std::optional<http::ClientConnection> stream_;
  std::optional<http::ClientConnection> unary_;
  bool unary_busy_ = false;
  EnvelopeDecoder decoder_;
  bool stream_done_ = false;
};

}  // namespace kiln::cli
