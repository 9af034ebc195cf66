#pragma once

// Builds a template's rootfs from its recipe: debootstrap, then the customisation done in C++
// (user, sudo, host files, cleanup, kiln-envd), without chroot.

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string>

#include "base/error.h"
#include "kilnd/template/build_progress.h"
#include "kilnd/template/recipe.h"
#include "kilnd/template/rootfs_tree.h"

namespace kiln::kilnd::tmpl {

// Percentages of a whole template build: the rootfs builder reports up to kBuiltPercent, the
// store the rest (metadata, install).
inline constexpr int kDebootstrapDonePercent = 90;
inline constexpr int kBuiltPercent = 95;

// Where the kiln-envd copy lives in every template.
inline constexpr char kEnvdPathInRootfs[] = "usr/local/bin/kiln-envd";
// The sandbox's `sudo`: a link to the agent the runtime mounts at /.kiln/envd, which then acts
// as the sudo client (a setuid sudo cannot work under no_new_privs). Debian's PATH puts
// /usr/local/bin before /usr/bin, so it shadows /usr/bin/sudo, which stays as it is.
inline constexpr char kSudoPathInRootfs[] = "usr/local/bin/sudo";
inline constexpr char kSudoLinkTarget[] = "/.kiln/envd";

struct BuildJob {
  Recipe recipe;
  std::filesystem::path rootfs;       // an existing, empty directory to fill
  std::filesystem::path envd_binary;  // host path of kiln-envd, copied into the tree
  std::string mirror;                 // Debian mirror URI
  // For recipes with a parent: the parent template's rootfs, copied instead of debootstrap.
  std::filesystem::path parent_rootfs;
  ProgressFn progress;                // may be empty
  // Called with the pid of each long-running child (a process group leader), so that a later
  // build can kill it if this process dies mid-build. May be empty.
  std::function<void(pid_t)> on_child;
};

// Fills job.rootfs from the recipe. Blocking (minutes). A failure may leave a partial tree:
// the caller removes it (BuildDir). Needs root.
using RootfsBuilder = std::function<Status(const BuildJob&)>;

// The real builder: RunDebootstrap, then CustomizeRootfs; for a recipe with a parent,
// BuildOnParent instead.
Status BuildDebianRootfs(const BuildJob& job);

// A copy of job.parent_rootfs (owners, modes, links, xattrs kept), the recipe's apt_packages
// installed into it (RunAptInstall), apt's caches emptied again.
Status BuildOnParent(const BuildJob& job);

// The steps after debootstrap: user `recipe.default_user` (uid/gid 1000, home from etc/skel,
// bash, group sudo), /etc/sudoers.d/<user> (NOPASSWD, 0440), /etc/hostname, /etc/hosts,
// /etc/resolv.conf (a placeholder; the runtime provides the real one), apt's caches and
// package lists emptied, kiln-envd at /usr/local/bin/kiln-envd (0755), /usr/local/bin/sudo ->
// /.kiln/envd. `today` is the day number
// written to etc/shadow. Needs root for the chown to 1000.
Status CustomizeRootfs(const RootfsTree& tree, const Recipe& recipe,
                       const std::filesystem::path& envd_binary, long today);

}  // namespace kiln::kilnd::tmpl
