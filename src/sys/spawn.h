#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/error.h"

namespace kiln::sys {

// Everything the child needs, prepared in the parent so that the child between fork and exec
// only makes syscalls (no allocation, no locks, no logging).
struct SpawnSpec {
  // Absolute (or relative to the agent's cwd) path of the executable; see FindExecutable.
  std::string path;
  std::vector<std::string> argv;
  // "KEY=value" entries: the child's whole environment.
  std::vector<std::string> env;
  // Entered after the identity switch, so it is checked with the user's permissions.
  std::string cwd;
  // Identity to switch to. Only applied when the agent runs as root; otherwise the child keeps
  // the agent's identity.
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  // The child's standard descriptors; -1 means /dev/null. The caller keeps ownership.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  // PTY mode: a new session with `stdin_fd` (the PTY slave) as controlling terminal.
  // Otherwise the child leads a new process group. Either way kill(-pid, sig) reaches
  // everything the command starts (unless it moves itself elsewhere).
  bool new_session = false;
  // A jail for build tools (kilnd runs apt-get inside a template it builds). When `root` is
  // set, the child enters a new mount namespace (nothing propagates back), makes `mounts` in
  // order (targets are host paths, usually below `root`), chroot()s into `root` and only then
  // switches identity and enters `cwd`. `path` is resolved inside `root`. The mounts vanish
  // with the namespace when the last process in it exits.
  struct Mount {
    std::string source;
    std::string target;
    std::string fstype;  // empty for bind mounts
    unsigned long flags = 0;
  };
  std::string root;
  std::vector<Mount> mounts;
};

// Forks and execs `spec`. Returns the pid once exec succeeded; the caller must reap it. When
// the child fails before exec it is reaped here and the error names the stage, e.g.
// "spawn /bin/x: chdir: No such file or directory"; a chdir failure is kInvalidArgument,
// other stages map errno (exec ENOENT -> kNotFound, EACCES -> kPermissionDenied).
// The child gets default signal dispositions, an empty signal mask and umask 022; every
// descriptor of the agent but the three standard ones is closed.
Result<pid_t> Spawn(const SpawnSpec& spec);

// Resolves `cmd` like execvp would, against the PATH value given: an absolute path must be a
// regular file, another name with a '/' is returned as is (exec resolves it in the child's
// cwd), a bare name becomes the first regular executable file in PATH. kNotFound when there
// is none, kInvalidArgument for an empty name.
Result<std::string> FindExecutable(const std::string& cmd, const std::string& path_env);

}  // namespace kiln::sys
