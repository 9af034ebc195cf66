#pragma once

#include <cstdint>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::sys {

// A pseudo-terminal: the master (non-blocking, close-on-exec) stays with the agent, the
// slave (close-on-exec, not yet anyone's controlling terminal) becomes the child's stdio.
struct PtyPair {
  UniqueFd master;
  UniqueFd slave;
};

// Opens a new PTY of the given size.
Result<PtyPair> OpenPty(uint16_t cols, uint16_t rows);
// TIOCSWINSZ on the master: the kernel sends SIGWINCH to the terminal's foreground group.
Status ResizePty(int master_fd, uint16_t cols, uint16_t rows);

}  // namespace kiln::sys
