#include "kilnd/template/rootfs_builder.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <ctime>

#include "base/unique_fd.h"
#include "kilnd/template/account_files.h"
#include "kilnd/template/apt_install.h"
#include "kilnd/template/debootstrap.h"
#include "sys/tree_copy.h"

namespace kiln::kilnd::tmpl {
namespace {

constexpr uid_t kUserId = 1000;
constexpr gid_t kGroupId = 1000;

constexpr char kHosts[] =
    "127.0.0.1\tlocalhost sandbox\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n";

// The runtime bind-mounts or writes the real one; a template must not carry the build host's.
constexpr char kResolvConf[] = "# Provided by the kiln runtime when a sandbox starts.\n";

Status Wrapped(Status st, std::string_view context) {
  if (!st) return Unexpected(std::move(st).error().Wrap(context));
  return {};
}

Status AddDefaultUser(const RootfsTree& tree, const Recipe& recipe, long today) {
  const std::string& user = recipe.default_user;
  std::string home = "/home/" + user;
  NewUser spec{user, kUserId, kGroupId, home, "/bin/bash", {"sudo"}, today};
  KILN_TRY(AddUser(tree, spec));
  KILN_TRY(tree.MakeDirs("home", FileAttrs{0755, 0, 0}));
  KILN_TRY(tree.MakeDirs(home, FileAttrs{0755, kUserId, kGroupId}));
  if (tree.Exists("etc/skel")) KILN_TRY(tree.CopyDirContents("etc/skel", home, kUserId, kGroupId));
  if (recipe.workdir != home) KILN_TRY(tree.MakeDirs(recipe.workdir, {0755, kUserId, kGroupId}));
  // sudo skips files in sudoers.d whose names contain '.' or end in '~'; user names have none.
  KILN_TRY(tree.MakeDirs("etc/sudoers.d", FileAttrs{0755, 0, 0}));
  return tree.WriteFile("etc/sudoers.d/" + user, user + " ALL=(ALL:ALL) NOPASSWD: ALL\n",
                        FileAttrs{0440, 0, 0});
}

Status WriteHostFiles(const RootfsTree& tree) {
  KILN_TRY(tree.WriteFile("etc/hostname", "sandbox\n", FileAttrs{0644, 0, 0}));
  KILN_TRY(tree.WriteFile("etc/hosts", kHosts, FileAttrs{0644, 0, 0}));
  return tree.WriteFile("etc/resolv.conf", kResolvConf, FileAttrs{0644, 0, 0});
}

// What `apt-get clean` removes (downloaded archives, binary package caches), and the package
// lists as Debian's container images do: ~50 MB that are stale by the time a sandbox runs
// (`apt-get update` comes first either way).
Status CleanAptCache(const RootfsTree& tree) {
  KILN_TRY(tree.RemoveFiles("var/cache/apt/archives", ".deb"));
  KILN_TRY(tree.RemoveFiles("var/cache/apt/archives/partial", ""));
  KILN_TRY(tree.RemoveFiles("var/cache/apt", ".bin"));
  KILN_TRY(tree.RemoveFiles("var/lib/apt/lists", ""));
  KILN_TRY(tree.RemoveFiles("var/lib/apt/lists/partial", ""));
  return {};
}

// Mount points the runtime needs, in case the recipe's base lacks one.
Status MakeMountPoints(const RootfsTree& tree) {
  for (const char* dir : {"proc", "sys", "dev", "dev/pts", "run"}) {
    KILN_TRY(tree.MakeDirs(dir, FileAttrs{0755, 0, 0}));
  }
  return tree.MakeDirs("tmp", FileAttrs{01777, 0, 0});
}

}  // namespace

Status CustomizeRootfs(const RootfsTree& tree, const Recipe& recipe,
                       const std::filesystem::path& envd_binary, long today) {
  // mkdtemp made the directory 0700; the rootfs root must be searchable by everyone.
  if (fchmod(tree.fd(), 0755) < 0) return FailErrno("chmod " + tree.path().string());
  KILN_TRY(Wrapped(AddDefaultUser(tree, recipe, today), "add user " + recipe.default_user));
  KILN_TRY(Wrapped(WriteHostFiles(tree), "host files"));
  KILN_TRY(Wrapped(CleanAptCache(tree), "clean apt cache"));
  KILN_TRY(Wrapped(MakeMountPoints(tree), "mount points"));
  KILN_TRY(tree.MakeDirs("usr/local/bin", FileAttrs{0755, 0, 0}));
  KILN_TRY(Wrapped(tree.CopyFileIn(envd_binary, kEnvdPathInRootfs, FileAttrs{0755, 0, 0}),
                   "copy kiln-envd"));
  return Wrapped(tree.Symlink(kSudoLinkTarget, kSudoPathInRootfs, 0, 0), "sudo link");
}

Status BuildOnParent(const BuildJob& job) {
  auto report = [&](const char* phase, std::string detail, int percent) {
    if (job.progress) job.progress(BuildProgress{phase, std::move(detail), percent});
  };
  const Recipe& recipe = job.recipe;
  report("prepare", "copying template " + recipe.parent, 1);
  UniqueFd src(open(job.parent_rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!src) return FailErrno("open " + job.parent_rootfs.string());
  UniqueFd dst(open(job.rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dst) return FailErrno("open " + job.rootfs.string());
  KILN_TRY(Wrapped(sys::CopyTree(src.get(), dst.get()), "copy " + job.parent_rootfs.string()));
  AptInstallArgs args;
  args.rootfs = job.rootfs;
  args.packages = recipe.apt_packages;
  AptProgress tracker(recipe.expected_debs, 5, kDebootstrapDonePercent);
  report("download", "apt-get install " + std::to_string(recipe.apt_packages.size()) + " packages", 5);
  KILN_TRY(RunAptInstall(args, job.on_child, [&](std::string_view line) {
    if (auto p = tracker.Feed(line); p && job.progress) job.progress(*p);
  }));
  report("customize", "cleaning apt caches", kDebootstrapDonePercent);
  KILN_ASSIGN_OR_RETURN(RootfsTree tree, RootfsTree::Open(job.rootfs));
  KILN_TRY(Wrapped(CleanAptCache(tree), "clean apt cache"));
  // apt-get ran with the host's resolv.conf mounted over the template's placeholder; the
  // placeholder is what stays.
  KILN_TRY(Wrapped(WriteHostFiles(tree), "host files"));
  report("customize", "rootfs ready", kBuiltPercent);
  return {};
}

Status BuildDebianRootfs(const BuildJob& job) {
  if (!job.parent_rootfs.empty()) return BuildOnParent(job);
  auto report = [&](const char* phase, std::string detail, int percent) {
    if (job.progress) job.progress(BuildProgress{phase, std::move(detail), percent});
  };
  const Recipe& recipe = job.recipe;
  DebootstrapArgs args;
  args.suite = recipe.suite;
  args.variant = recipe.variant;
  args.packages = recipe.packages;
  args.target = job.rootfs;
  args.mirror = job.mirror;
  report("download", "debootstrap " + recipe.suite + " from " + job.mirror, 0);
  DebootstrapProgress tracker(recipe.expected_debs, 0, kDebootstrapDonePercent);
  KILN_TRY(RunDebootstrap(args, job.on_child, [&](std::string_view line) {
    if (auto p = tracker.Feed(line); p && job.progress) job.progress(*p);
  }));
  report("customize", "user, sudo, host files, kiln-envd", kDebootstrapDonePercent);
  KILN_ASSIGN_OR_RETURN(RootfsTree tree, RootfsTree::Open(job.rootfs));
  KILN_TRY(CustomizeRootfs(tree, recipe, job.envd_binary, time(nullptr) / 86400));
  report("customize", "rootfs ready", kBuiltPercent);
  return {};
}

}  // namespace kiln::kilnd::tmpl
