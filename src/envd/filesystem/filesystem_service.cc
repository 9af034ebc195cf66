#include "envd/filesystem/filesystem_service.h"

namespace kiln::envd {

FilesystemService::FilesystemService(boost::asio::io_context& io, AgentState& state) : io_(io), state_(state) {}
FilesystemService::~FilesystemService() = default;

void FilesystemService::Register(http::Router& router) { (void)router; }

}  // namespace kiln::envd
