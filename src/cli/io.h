#pragma once

// What a CLI command may touch in its surroundings, passed in so tests can substitute it:
// the three standard descriptors, the environment, and the clock.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln::cli {

struct Io {
  int in = 0;
  int out = 1;
  int err = 2;
};

struct Environment {
  // Value of an environment variable; nullopt when unset. Empty function: nothing is set.
  std::function<std::optional<std::string>(const std::string&)> getenv;
  // Wall clock for relative times. Empty function: std::chrono::system_clock::now.
  std::function<std::chrono::system_clock::time_point()> now;

  std::optional<std::string> Get(const std::string& name) const;
  std::chrono::system_clock::time_point Now() const;
  // The process's real environment and clock.
  static Environment Process();
};

// Writes all of `data` (retrying short writes and EINTR). kUnavailable on failure, e.g. EPIPE
// when the reader went away.
Status WriteAll(int fd, std::string_view data);

// Writes "kiln: <message>\n" to `fd`; best effort.
void PrintError(int fd, std::string_view message);

}  // namespace kiln::cli
