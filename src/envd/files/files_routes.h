#pragma once

#include <boost/asio/io_context.hpp>

#include "envd/agent_state.h"
#include "http/server.h"

namespace kiln::envd {

// envd's plain-HTTP file transfer routes:
//   GET  /files?path=&username=&signature=&signature_expiration=   download
//   POST /files?path=&username=&signature=&signature_expiration=   upload
// They are exempt from the agent's token filter and check the token or URL signature
// themselves (envd/files/signature.h). Downloads stream from disk in chunks with Range,
// conditional and gzip support (download_plan.h); uploads stream multipart/form-data or
// octet-stream bodies into files (upload_session.h). Lives on the agent's io_context
// thread with the AgentState it is given; not thread-safe.
class FilesRoutes {
 public:
  FilesRoutes(boost::asio::io_context& io, AgentState& state);
  ~FilesRoutes();
  void Register(http::Router& router);

 private:
  http::Task<void> Download(http::Exchange& ex);
  http::Task<void> Upload(http::Exchange& ex);

  boost::asio::io_context& io_;
  AgentState& state_;
};

}  // namespace kiln::envd
