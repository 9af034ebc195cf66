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

  // ---- Confinement (for QEMU and other helpers kilnd runs for a sandbox); all off by default.

  // Descriptors the child gets at 3, 4, 5, ... in this order, without close-on-exec (e.g. a tap
  // fd for `-netdev tap,fd=3`). Everything else from 3 up is still closed. The caller keeps
  // ownership; a source may repeat, be a standard descriptor or already sit at any target.
  std::vector<int> inherit_fds;
  // A network namespace fd (e.g. /proc/<pid>/ns/net) the child enters (setns) before anything
  // else namespaced. -1: the caller's namespace.
  int netns_fd = -1;
  // Namespaces the child gets for itself: any of CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUTS,
  // CLONE_NEWNET, CLONE_NEWCGROUP and CLONE_NEWPID (others are kInvalidArgument; a user
  // namespace would need id maps written from outside). CLONE_NEWNS makes every mount private
  // (MS_REC | MS_PRIVATE) first. CLONE_NEWPID creates the child inside the new namespace
  // (clone(CLONE_NEWPID)), where it is PID 1; the returned pid is its pid here, so kill() and
  // pidfd_open() work as usual. As PID 1 it ignores signals it has no handler for, except
  // SIGKILL/SIGSTOP sent from outside; when it exits, the kernel kills the rest of the namespace.
  // /proc stays the host's unless `mounts` remount it.
  int unshare_flags = 0;
  // Open fds of cgroup.procs files (one per hierarchy: v1 memory/pids/cpu and the cgroup2
  // group; see kilnd::cgroup::Cgroup::OpenProcsFiles). The child writes "0" to each first, so it
  // runs in those groups before it execs. The caller keeps ownership.
  std::vector<int> cgroup_procs_fds;
  // PR_SET_NO_NEW_PRIVS: exec never grants privileges (setuid bits, file capabilities).
  bool no_new_privs = false;
  // PR_SET_THP_DISABLE: no transparent huge pages in the child (kept across exec), so a
  // region it advises MADV_HUGEPAGE but touches sparsely costs what it touches, not 2 MiB steps.
  bool no_huge_pages = false;
  // PR_SET_PDEATHSIG: the child gets this signal when the THREAD that called Spawn exits (not
  // the process: call Spawn from a thread that lives as long as the child should). Set after
  // the identity switch (which would clear it); if the caller died before, the child exits.
  int parent_death_signal = 0;
};

// Forks and execs `spec`. Returns the pid once exec succeeded; the caller must reap it. When
// the child fails before exec it is reaped here and the error names the stage, e.g.
// "spawn /bin/x: chdir: No such file or directory"; a chdir failure is kInvalidArgument,
// other stages map errno (exec ENOENT -> kNotFound, EACCES -> kPermissionDenied).
// The child gets default signal dispositions, an empty signal mask and umask 022; every
// descriptor of the agent but the three standard ones (and `inherit_fds`) is closed. As root,
// the identity switch sets exactly `groups` (none when empty); a switch to a non-root uid drops
// the effective, permitted and ambient capabilities (the bounding set stays: use no_new_privs).
// Order in the child: cgroups, network namespace, session, descriptors, unshare, root jail,
// identity, parent death signal, no_new_privs, huge pages, cwd, signals, exec. A failing stage
// is named in the error ("spawn /usr/bin/qemu: setns net: Invalid argument").
Result<pid_t> Spawn(const SpawnSpec& spec);

// Resolves `cmd` like execvp would, against the PATH value given: an absolute path must be a
// regular file, another name with a '/' is returned as is (exec resolves it in the child's
// cwd), a bare name becomes the first regular executable file in PATH. kNotFound when there
// is none, kInvalidArgument for an empty name.
Result<std::string> FindExecutable(const std::string& cmd, const std::string& path_env);

}  // namespace kiln::sys
