// Privileged and slow (a real debootstrap, 1-2 minutes): runs only with
// KILN_TEST_BUILD_TEMPLATE=1, as root. Builds `base` into the shared store that tests and CI
// use (KILN_TEMPLATE_STORE, default /var/cache/kiln/templates) unless it is already current.
// kiln-envd: KILN_ENVD_BINARY, default <dir of this test>/cmd/kiln-envd.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "base/unique_fd.h"
#include "kilnd/template/template_store.h"
#include "sys/spawn.h"

namespace kiln::kilnd::tmpl {
namespace {

namespace fs = std::filesystem;

fs::path EnvOr(const char* name, const fs::path& fallback) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0' ? fs::path(v) : fallback;
}

// Runs argv (no shell) and returns its exit status and stdout+stderr.
std::pair<int, std::string> RunCommand(const std::vector<std::string>& argv) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return {-1, "pipe"};
  UniqueFd r(p[0]), w(p[1]);
  sys::SpawnSpec spec;
  spec.path = argv[0];
  spec.argv = argv;
  spec.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root", "LC_ALL=C"};
  spec.cwd = "/";
  spec.stdout_fd = w.get();
  spec.stderr_fd = w.get();
  auto pid = sys::Spawn(spec);
  if (!pid) return {-1, pid.error().message()};
  w.reset();
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(r.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  waitpid(*pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

TEST(TemplateBuildTest, BuildsBaseIntoTheSharedStore) {
  const char* enabled = getenv("KILN_TEST_BUILD_TEMPLATE");
  if (enabled == nullptr || std::string(enabled) != "1") {
    GTEST_SKIP() << "slow; set KILN_TEST_BUILD_TEMPLATE=1 to build the base template";
  }
  if (geteuid() != 0) GTEST_SKIP() << "needs root (debootstrap, chown)";
  fs::path store_dir = EnvOr("KILN_TEMPLATE_STORE", "/var/cache/kiln/templates");
  fs::path envd =
      EnvOr("KILN_ENVD_BINARY", fs::read_symlink("/proc/self/exe").parent_path() / "cmd/kiln-envd");
  ASSERT_TRUE(fs::is_regular_file(envd)) << envd << " (build it: ninja kiln-envd)";

  TemplateStore store(store_dir);
  int shown = -10;
  std::string phase;
  auto t0 = std::chrono::steady_clock::now();
  auto info = store.EnsureBuilt("base", envd, [&](const BuildProgress& p) {
    if (p.phase == phase && p.percent < shown + 10 && p.phase != "done") return;
    phase = p.phase;
    shown = p.percent;
    std::cerr << "[" << p.percent << "%] " << p.phase << ": " << p.detail << "\n";
  });
  ASSERT_TRUE(info) << info.error().message();
  std::cerr << "EnsureBuilt took "
            << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                t0)
                   .count()
            << " s\n";
  const fs::path& root = info->rootfs;
  EXPECT_EQ(root, store_dir / "base/rootfs");

  auto tree = RootfsTree::Open(root);
  ASSERT_TRUE(tree);
  for (const char* bin : {"usr/bin/bash", "usr/bin/python3", "usr/bin/git", "usr/bin/curl",
                          "usr/bin/sudo", "usr/bin/ps", "etc/ssl/certs/ca-certificates.crt"}) {
    EXPECT_TRUE(tree->Exists(bin)) << bin;
  }
  auto passwd = tree->ReadFile("etc/passwd");
  ASSERT_TRUE(passwd);
  EXPECT_NE(passwd->find("\nuser:x:1000:1000::/home/user:/bin/bash\n"), std::string::npos);
  auto group = tree->ReadFile("etc/group");
  ASSERT_TRUE(group);
  EXPECT_NE(group->find("\nsudo:x:27:user\n"), std::string::npos);
  struct stat st {};
  ASSERT_EQ(stat((root / "home/user").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1000u);
  EXPECT_TRUE(fs::exists(root / "home/user/.bashrc"));
  ASSERT_EQ(stat((root / "etc/sudoers.d/user").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0440u);
  EXPECT_EQ(fs::file_size(root / "usr/local/bin/kiln-envd"), fs::file_size(envd));
  ASSERT_EQ(stat((root / "usr/local/bin/kiln-envd").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(*tree->ReadFile("etc/hostname"), "sandbox\n");

  std::ifstream json_in(store_dir / "base/template.json");
  std::ostringstream json;
  json << json_in.rdbuf();
  auto parsed = ParseTemplateInfo(json.str(), root);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed->recipe, BuiltinRecipes()[0].Stamp());
  EXPECT_EQ(parsed->default_user, "user");

  for (const auto& e : fs::directory_iterator(store_dir)) {
    EXPECT_FALSE(e.path().filename().string().starts_with(".build-")) << e.path();
  }

  // The tree works: its python and git run (chroot, execve; no shell).
  auto [py_status, py_out] = RunCommand({"/usr/sbin/chroot", root.string(), "/usr/bin/python3",
                                         "-c", "import ssl, json, sqlite3; print('py ok')"});
  EXPECT_EQ(py_status, 0) << py_out;
  EXPECT_EQ(py_out, "py ok\n");
  auto [git_status, git_out] =
      RunCommand({"/usr/sbin/chroot", root.string(), "/usr/bin/git", "--version"});
  EXPECT_EQ(git_status, 0) << git_out;
  auto [id_status, id_out] =
      RunCommand({"/usr/sbin/chroot", "--userspec=1000:1000", root.string(), "/usr/bin/id", "-un"});
  EXPECT_EQ(id_status, 0) << id_out;
  EXPECT_EQ(id_out, "user\n");

  auto t1 = std::chrono::steady_clock::now();
  auto again = store.EnsureBuilt("base", envd, nullptr);
  ASSERT_TRUE(again);
  EXPECT_LT(std::chrono::steady_clock::now() - t1, std::chrono::seconds(1));
  EXPECT_EQ(again->created_at, info->created_at);
}

}  // namespace
}  // namespace kiln::kilnd::tmpl
