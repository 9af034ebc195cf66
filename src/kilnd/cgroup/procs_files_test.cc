// Cgroup::OpenProcsFiles: a child spawned with those fds (sys::SpawnSpec::cgroup_procs_fds)
// runs in the group in every hierarchy from its exec on.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>
#include <string>

#include "base/unique_fd.h"
#include "kilnd/cgroup/cgroup.h"
#include "sys/spawn.h"

namespace kiln::kilnd::cgroup {
namespace {

// Runs `cat /proc/self/cgroup` joined to `procs` and returns its output.
std::string CgroupsOfSpawnedChild(const std::vector<UniqueFd>& procs) {
  int fds[2];
  EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
  UniqueFd r(fds[0]), w(fds[1]);
  sys::SpawnSpec spec;
  spec.path = "/bin/cat";
  spec.argv = {"cat", "/proc/self/cgroup"};
  spec.cwd = "/";
  spec.stdout_fd = w.get();
  for (const UniqueFd& fd : procs) spec.cgroup_procs_fds.push_back(fd.get());
  Result<pid_t> pid = sys::Spawn(spec);
  EXPECT_TRUE(pid) << pid.error().message();
  if (!pid) return "";
  w.reset();
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(r.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  int status = 0;
  EXPECT_EQ(waitpid(*pid, &status, 0), *pid);
  return out;
}

TEST(CgroupProcsFilesTest, SpawnedChildRunsInTheGroupInEveryHierarchy) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  std::string parent = "kiln-procs-test-" + std::to_string(getpid());
  auto backend = CgroupBackend::Detect(parent);
  ASSERT_TRUE(backend) << backend.error().message();
  struct Cleanup {
    CgroupBackend& b;
    ~Cleanup() { (void)b.RemoveLeftovers(); }
  } cleanup{**backend};
  auto group = (*backend)->Create("g");
  ASSERT_TRUE(group) << group.error().message();
  auto procs = (*group)->OpenProcsFiles();
  ASSERT_TRUE(procs) << procs.error().message();
  bool hybrid = (*backend)->kind() == "hybrid";
  // hybrid: memory, pids, cpu(,cpuacct) and cgroup2; v2: cgroup2 only.
  EXPECT_EQ(procs->size() >= 4, hybrid) << procs->size();

  std::string out = CgroupsOfSpawnedChild(*procs);
  std::string path = "/" + parent + "/g";
  std::istringstream lines(out);
  std::string line;
  int matched = 0;
  while (std::getline(lines, line)) {
    // "<id>:<controllers>:<path>"
    size_t second = line.find(':', line.find(':') + 1);
    std::string controllers = line.substr(line.find(':') + 1, second - line.find(':') - 1);
    std::string where = line.substr(second + 1);
    bool ours = controllers.empty();  // cgroup2
    std::istringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');) {
      ours = ours || name == "memory" || name == "pids" || name == "cpu";
    }
    if (!ours) continue;
    EXPECT_EQ(where, path) << line;
    ++matched;
  }
  EXPECT_EQ(matched, hybrid ? 4 : 1) << out;  // memory, pids, cpu,cpuacct, 0::
}

}  // namespace
}  // namespace kiln::kilnd::cgroup
