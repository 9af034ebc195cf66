#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>

#include "envd/agent_state.h"
#include "http/server.h"

namespace kiln::envd {

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
