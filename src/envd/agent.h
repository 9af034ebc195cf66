#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>

#include "envd/agent_state.h"
#include "http/server.h"

namespace kiln::envd {

class ChildReaper;
class ProcessService;
class FilesystemService;
class FilesRoutes;
class ControlRoutes;

// kiln-envd: owns the shared AgentState and every service, and registers their routes on one
// router behind the access-token filter. Lives on one io_context thread.
class Agent {
 public:
  Agent(boost::asio::io_context& io, AgentState initial);
  ~Agent();

  const http::Router& router() const { return router_; }
  AgentState& state() { return state_; }
  // The agent's one collector of exited children (owned by the process service); other
  // components that start children register them here.
  ChildReaper& reaper();

 private:
  boost::asio::io_context& io_;
  AgentState state_;
  http::Router router_;
  std::unique_ptr<ProcessService> process_;
  std::unique_ptr<FilesystemService> filesystem_;
  std::unique_ptr<FilesRoutes> files_;
  std::unique_ptr<ControlRoutes> control_;
};

// The 401 body envd answers when X-Access-Token is missing or wrong.
http::Response UnauthorizedResponse();

}  // namespace kiln::envd
