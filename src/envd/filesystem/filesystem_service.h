#pragma once

#include <boost/asio/io_context.hpp>

#include "envd/agent_state.h"
#include "http/server.h"

namespace kiln::envd {

// filesystem.Filesystem RPCs (Stat, ListDir, MakeDir, Move, Remove, WatchDir, watchers).
class FilesystemService {
 public:
  FilesystemService(boost::asio::io_context& io, AgentState& state);
  ~FilesystemService();
  void Register(http::Router& router);

 private:
  boost::asio::io_context& io_;
  AgentState& state_;
};

}  // namespace kiln::envd
