#pragma once

// The local terminal for `kiln sandbox shell`: raw mode for the session, restored when the
// owner is destroyed (every return path, including errors), and the window size.

#include <termios.h>

#include <cstdint>
#include <optional>

#include "base/error.h"

namespace kiln::cli {

struct WindowSize {
  uint16_t cols = 80;
  uint16_t rows = 24;
};

// The size of the terminal on `fd`; nullopt when it is not a terminal or reports 0x0.
std::optional<WindowSize> GetWindowSize(int fd);

// Owns raw mode on one terminal: keystrokes pass through unprocessed (no echo, no line
// editing, no signals from ^C/^Z), so the remote PTY sees them. Move-only.
class RawTerminal {
 public:
  // kInvalidArgument when `fd` is not a terminal.
  static Result<RawTerminal> Enter(int fd);
  RawTerminal(RawTerminal&& other) noexcept;
  RawTerminal& operator=(RawTerminal&&) = delete;
  RawTerminal(const RawTerminal&) = delete;
  ~RawTerminal();

  // Puts the saved settings back now (idempotent).
  void Restore();

 private:
  RawTerminal(int fd, const termios& saved) : fd_(fd), saved_(saved) {}
  int fd_ = -1;
  termios saved_{};
};

}  // namespace kiln::cli
