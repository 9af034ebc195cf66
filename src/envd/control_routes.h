#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "envd/agent_state.h"
#include "http/server.h"

namespace kiln::envd {

// POST /init's optional "entropy": base64 of this many random bytes from the host, mixed
// into the kernel RNG (RNDADDENTROPY, then RNDRESEEDCRNG) so that VMs restored from one
// snapshot stop sharing RNG state.
inline constexpr size_t kMinInitEntropy = 32;
inline constexpr size_t kMaxInitEntropy = 512;
// The bytes, or nullopt when `base64` is not base64 or decodes to the wrong size.
std::optional<std::string> DecodeInitEntropy(std::string_view base64);

// GET /health, GET /envs, POST /init, GET /metrics.
class ControlRoutes {
 public:
  ControlRoutes(boost::asio::io_context& io, AgentState& state);
  void Register(http::Router& router);

 private:
  http::Response Init(const http::RequestHead& head, const std::string& body);
  http::Response Metrics();

  boost::asio::io_context& io_;
  AgentState& state_;
  // Previous /proc/stat sample, for CPU use between two /metrics calls.
  uint64_t last_cpu_total_ = 0;
  uint64_t last_cpu_idle_ = 0;
};

}  // namespace kiln::envd
