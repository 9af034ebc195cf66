// The vm runtime end to end on this host (TCG here): a template snapshot of a tiny busybox
// rootfs with the real kiln-envd, sandboxes restored from it, pause to disk and resume.

#include "kilnd/runtime/vm/vm_runtime.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
// clang-format off
#include <boost/asio/io_context.hpp>
// clang-format on

#include "http/client.h"
#include "kilnd/runtime/vm/run_sync.h"
#include "kilnd/runtime/vm/test_support.h"

namespace kiln::kilnd::vm {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using testing::TempDir;

constexpr char kQemu[] = "/usr/bin/qemu-system-x86_64";
constexpr char kBusybox[] = "/bin/busybox";

http::Task<Result<unsigned>> Get(UniqueFd fd, std::string address, std::string path) {
  KILN_CO_ASSIGN_OR_RETURN(auto conn, co_await http::ClientConnection::ConnectFd(
                                          std::move(fd), address, 49983, milliseconds(2000)));
  http::ClientRequest req;
  req.target = path;
  KILN_CO_ASSIGN_OR_RETURN(auto res, co_await conn.Send(std::move(req), milliseconds(5000)));
  co_return res.status;
}

// GET `path` from the sandbox's agent; the HTTP status.
Result<unsigned> AgentGet(Instance& inst, const std::string& path) {
  boost::asio::io_context io;
  KILN_ASSIGN_OR_RETURN(UniqueFd fd, inst.OpenSocket());
  return RunSync(io, Get(std::move(fd), std::string(inst.address()), path));
}

double Ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

void WriteFile(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
}

class VmRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    if (access(kQemu, X_OK) != 0) GTEST_SKIP() << "no " << kQemu;
    if (access(kBusybox, X_OK) != 0) GTEST_SKIP() << "no " << kBusybox;
    if (access(testing::VmInitBinary().c_str(), X_OK) != 0) GTEST_SKIP() << "no kiln-vminit";
    if (access(testing::EnvdBinary().c_str(), X_OK) != 0) GTEST_SKIP() << "no kiln-envd";
    ASSERT_FALSE(tmp_.path().empty());
    rootfs_ = tmp_.path() / "template" / "rootfs";
    for (const char* d : {"bin", "etc", "tmp", "dev", "proc", "sys", "run", "root", "home/user"}) {
      fs::create_directories(rootfs_ / d);
    }
    fs::copy_file(kBusybox, rootfs_ / "bin/busybox");
    fs::create_symlink("busybox", rootfs_ / "bin/sh");
    WriteFile(rootfs_ / "etc/passwd",
              "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n");
    WriteFile(rootfs_ / "etc/group", "root:x:0:\nuser:x:1000:\n");
    chmod((rootfs_ / "tmp").c_str(), 01777);

    options_.name = "vt" + std::to_string(getpid() % 100000);
    options_.state_dir = tmp_.path() / "state";
    options_.cache_dir = testing::VmCacheDir();
    options_.snapshot_dir = tmp_.path() / "snapshots";
    options_.vminit = testing::VmInitBinary();
    options_.memory_mib = 256;
    options_.disk_extra_bytes = 64ull << 20;
  }

  InstanceSpec Spec(const std::string& id) {
    InstanceSpec spec;
    spec.id = id;
    spec.rootfs = rootfs_;
    spec.envd_binary = testing::EnvdBinary();
    return spec;
  }

  TempDir tmp_;
  fs::path rootfs_;
  VmRuntimeOptions options_;
};

TEST_F(VmRuntimeTest, RestoresSandboxesFromTheTemplateSnapshotPausesAndResumes) {
  auto rt = VmRuntime::Create(options_);
  ASSERT_TRUE(rt) << rt.error().message();
  EXPECT_EQ((*rt)->accel(), "tcg");  // this host's /dev/kvm cannot run standard guests

  auto t0 = std::chrono::steady_clock::now();
  auto first = (*rt)->Create(Spec("vmta"));
  ASSERT_TRUE(first) << first.error().message();
  auto t1 = std::chrono::steady_clock::now();
  auto health = AgentGet(**first, "/health");
  ASSERT_TRUE(health) << health.error().message();
  EXPECT_EQ(*health / 100, 2u);
  auto t2 = std::chrono::steady_clock::now();

  auto second = (*rt)->Create(Spec("vmtb"));
  ASSERT_TRUE(second) << second.error().message();
  auto t3 = std::chrono::steady_clock::now();
  auto h2 = AgentGet(**second, "/health");
  ASSERT_TRUE(h2) << h2.error().message();
  auto t4 = std::chrono::steady_clock::now();
  std::printf("snapshot build + first restore %.0f ms, its /health %.1f ms; restore %.1f ms, /health %.1f ms\n",
              Ms(t1 - t0), Ms(t2 - t1), Ms(t3 - t2), Ms(t4 - t3));
  EXPECT_FALSE((*rt)->Create(Spec("vmtb")));  // the id is taken

  auto stats = (*second)->Stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_GT(stats->mem_used, 0u);
  EXPECT_EQ(stats->mem_total, 256ull << 20);

  ASSERT_TRUE((*second)->Freeze());
  ASSERT_TRUE((*second)->Thaw());
  ASSERT_TRUE(AgentGet(**second, "/health"));

  // Pause to disk, stop, resume in a new QEMU.
  fs::path paused = tmp_.path() / "paused";
  ASSERT_TRUE((*second)->Freeze());
  auto saved = (*second)->SnapshotFiles(paused);
  ASSERT_TRUE(saved) << saved.error().message();
  EXPECT_TRUE(fs::exists(paused / "memory"));
  EXPECT_TRUE(fs::exists(paused / "disk.qcow2"));
  // Pruning leaves the snapshot this runtime uses (and the paused sandbox needs), and removes a
  // superseded one of the same template.
  fs::path used;
  for (const auto& e : fs::directory_iterator(options_.snapshot_dir)) {
    if (e.is_directory()) used = e.path();
  }
  ASSERT_FALSE(used.empty());
  std::string name = used.filename().string();
  fs::path older = options_.snapshot_dir / (name.substr(0, name.size() - 16) + "0123456789abcdef");
  fs::create_directories(older);
  WriteFile(older / "snapshot.json", "old");
  // A paused sandbox without a ref (paused by an older kilnd) is found in the paused dir.
  fs::remove_all(used / "refs");
  auto pruned = (*rt)->PruneSnapshots(tmp_.path());
  ASSERT_TRUE(pruned) << pruned.error().message();
  EXPECT_EQ(pruned->removed, std::vector<fs::path>{older});
  EXPECT_TRUE(fs::exists(used / "ram"));
  EXPECT_FALSE(fs::is_empty(used / "refs"));  // the paused sandbox's
  ASSERT_TRUE((*second)->Kill());
  EXPECT_FALSE(fs::exists(options_.state_dir / "sandboxes" / "vmtb"));
  InstanceSpec resume = Spec("vmtb");
  resume.files_from = paused;
  auto resumed = (*rt)->Create(resume);
  ASSERT_TRUE(resumed) << resumed.error().message();
  auto h3 = AgentGet(**resumed, "/health");
  ASSERT_TRUE(h3) << h3.error().message();
  EXPECT_EQ(*h3 / 100, 2u);

  // A dead QEMU shows on the exit descriptor.
  auto exit_fd = (*first)->ExitFd();
  ASSERT_TRUE(exit_fd);
  ASSERT_TRUE((*first)->Kill());
  ASSERT_TRUE((*resumed)->Kill());
  std::error_code ec;
  EXPECT_TRUE(fs::is_empty(options_.state_dir / "sandboxes", ec));
}

TEST_F(VmRuntimeTest, ResumeWithoutItsTemplateSnapshotFailsClearly) {
  auto rt = VmRuntime::Create(options_);
  ASSERT_TRUE(rt) << rt.error().message();
  fs::path paused = tmp_.path() / "bogus";
  fs::create_directories(paused);
  WriteFile(paused / "vm.json", R"({"snapshot": "/nonexistent/snap", "memory_mib": 256})");
  InstanceSpec resume = Spec("vmtc");
  resume.files_from = paused;
  auto r = (*rt)->Create(resume);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("gone"), std::string::npos) << r.error().message();
  WriteFile(paused / "vm.json", "{not json");
  r = (*rt)->Create(resume);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  std::error_code ec;
  EXPECT_TRUE(fs::is_empty(options_.state_dir / "sandboxes", ec));
}

}  // namespace
}  // namespace kiln::kilnd::vm
