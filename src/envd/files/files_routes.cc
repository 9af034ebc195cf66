#include "envd/files/files_routes.h"

namespace kiln::envd {

FilesRoutes::FilesRoutes(boost::asio::io_context& io, AgentState& state) : io_(io), state_(state) {}
FilesRoutes::~FilesRoutes() = default;

void FilesRoutes::Register(http::Router& router) { (void)router; }

}  // namespace kiln::envd
