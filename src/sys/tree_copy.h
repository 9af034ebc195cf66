#pragma once

// Copies an overlayfs upper directory (a sandbox's writable layer) to persistent storage and
// back: regular files, directories, symlinks, FIFOs, overlay whiteouts (character devices
// 0/0) and opaque directories (xattr user.overlay.opaque or trusted.overlay.opaque), with
// owners, modes, times, hard links and user.* / trusted.overlay.* / security.capability xattrs.
//
// SECURITY: the source may be written by a sandbox while it is copied. Every name is opened
// relative to its parent directory fd with O_NOFOLLOW, so a symlink or rename can never make
// the copy read or write outside the two trees. Device nodes other than whiteouts and sockets
// are skipped, never recreated.

#include <string>
#include <vector>

#include "base/error.h"

namespace kiln::sys {

struct TreeCopyOptions {
  // Entries of the top directory that are not copied (e.g. ".kiln", the agent's mount point).
  std::vector<std::string> skip_top_level;
  // Deeper trees fail with kResourceExhausted (two fds are open per level).
  int max_depth = 256;
};

// Copies the contents of directory `src_dir` into the existing directory `dst_dir` (both open
// directory fds; not owned). The top directory's own owner, mode, xattrs and times are copied
// too. Stops at the first failure, naming the entry ("copy usr/bin/x: No space left on device").
Status CopyTree(int src_dir, int dst_dir, const TreeCopyOptions& options = {});

}  // namespace kiln::sys
