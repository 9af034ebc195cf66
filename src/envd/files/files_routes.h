#pragma once

#include <boost/asio/io_context.hpp>

#include "envd/agent_state.h"
#include "http/server.h"

namespace kiln::envd {

// GET/POST /files (download, upload, signatures, gzip, metadata).
class FilesRoutes {
 public:
  FilesRoutes(boost::asio::io_context& io, AgentState& state);
  ~FilesRoutes();
  void Register(http::Router& router);

 private:
  boost::asio::io_context& io_;
  AgentState& state_;
};

}  // namespace kiln::envd
