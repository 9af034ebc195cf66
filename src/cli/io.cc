#include "cli/io.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace kiln::cli {

std::optional<std::string> Environment::Get(const std::string& name) const {
  if (!getenv) return std::nullopt;
  return getenv(name);
}

std::chrono::system_clock::time_point Environment::Now() const {
  return now ? now() : std::chrono::system_clock::now();
}

Environment Environment::Process() {
  Environment env;
  env.getenv = [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
  return env;
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        // The descriptor may share a non-blocking file description with stdin (a terminal
        // that the shell command reads asynchronously): wait until it drains.
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, -1);
        continue;
      }
      return FailErrno("write");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

void PrintError(int fd, std::string_view message) {
  std::string line = "kiln: ";
  line += message;
  if (line.empty() || line.back() != '\n') line += '\n';
  (void)WriteAll(fd, line);
}

}  // namespace kiln::cli
