#include "sys/pty.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>

namespace kiln::sys {

Result<PtyPair> OpenPty(uint16_t cols, uint16_t rows) {
  UniqueFd master(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
  if (!master) return FailErrno("posix_openpt");
  if (grantpt(master.get()) < 0) return FailErrno("grantpt");
  if (unlockpt(master.get()) < 0) return FailErrno("unlockpt");
  char name[128];
  if (ptsname_r(master.get(), name, sizeof name) != 0) return FailErrno("ptsname");
  UniqueFd slave(open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave) return FailErrno("open pty slave");
  KILN_TRY(ResizePty(master.get(), cols, rows));
  return PtyPair{std::move(master), std::move(slave)};
}

Status ResizePty(int master_fd, uint16_t cols, uint16_t rows) {
  winsize ws{};
  ws.ws_col = cols;
  ws.ws_row = rows;
  if (ioctl(master_fd, TIOCSWINSZ, &ws) < 0) return FailErrno("TIOCSWINSZ");
  return Status();
}

}  // namespace kiln::sys
