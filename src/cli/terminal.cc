#include "cli/terminal.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace kiln::cli {

std::optional<WindowSize> GetWindowSize(int fd) {
  winsize ws{};
  if (ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0 || ws.ws_row == 0) return std::nullopt;
  return WindowSize{ws.ws_col, ws.ws_row};
}

Result<RawTerminal> RawTerminal::Enter(int fd) {
  termios saved{};
  if (tcgetattr(fd, &saved) != 0) {
    return Fail(Errc::kInvalidArgument, "stdin is not a terminal");
  }
  termios raw = saved;
  cfmakeraw(&raw);
  // Output post-processing stays off too: the remote PTY already turns \n into \r\n.
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  if (tcsetattr(fd, TCSANOW, &raw) != 0) return FailErrno("tcsetattr raw mode");
  return RawTerminal(fd, saved);
}

RawTerminal::RawTerminal(RawTerminal&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), saved_(other.saved_) {}

RawTerminal::~RawTerminal() { Restore(); }

void RawTerminal::Restore() {
  if (fd_ < 0) return;
  // TCSADRAIN: let pending output (the shell's last words) reach the screen first.
  while (tcsetattr(fd_, TCSADRAIN, &saved_) != 0 && errno == EINTR) {
  }
  fd_ = -1;
}

}  // namespace kiln::cli
