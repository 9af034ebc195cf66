#include "envd/process/process_service.h"

namespace kiln::envd {

ProcessService::ProcessService(boost::asio::io_context& io, AgentState& state) : io_(io), state_(state) {}
ProcessService::~ProcessService() = default;

void ProcessService::Register(http::Router& router) { (void)router; }

}  // namespace kiln::envd
