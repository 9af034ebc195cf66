#pragma once

#include <boost/asio/io_context.hpp>

#include "envd/agent_state.h"
#include "http/server.h"

namespace kiln::envd {

// process.Process RPCs (Start, Connect, List, SendInput, SendSignal, CloseStdin, Update).
class ProcessService {
 public:
  ProcessService(boost::asio::io_context& io, AgentState& state);
  ~ProcessService();
  void Register(http::Router& router);

 private:
  boost::asio::io_context& io_;
  AgentState& state_;
};

}  // namespace kiln::envd
