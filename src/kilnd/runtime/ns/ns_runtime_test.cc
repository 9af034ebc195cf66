#include "kilnd/runtime/ns/ns_runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "kilnd/cgroup/cgroup.h"
#include "kilnd/runtime/ns/ns_test_support.h"

namespace kiln::kilnd::ns {
namespace {

using namespace std::chrono_literals;
using testing::GetHealth;
using testing::RunCommand;

[[maybe_unused]] std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class NsRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    const char* rootfs = std::getenv("KILN_TEST_ROOTFS");
    const char* envd = std::getenv("KILN_TEST_ENVD");
    if (rootfs == nullptr || envd == nullptr) {
      GTEST_SKIP() << "set KILN_TEST_ROOTFS and KILN_TEST_ENVD";
    }
    rootfs_ = rootfs;
    envd_ = envd;
    name_ = "kt" + std::to_string(getpid() % 100000);
    scratch_ = std::filesystem::path("/tmp") / ("kiln-ns-test-" + std::to_string(getpid()));
    std::filesystem::create_directories(scratch_);
    options_.name = name_;
    options_.state_dir = scratch_ / "state";
    auto rt = NsRuntime::Create(options_);
    ASSERT_TRUE(rt) << rt.error().message();
    runtime_ = std::move(*rt);
  }

  void TearDown() override {
    if (runtime_) {
      auto st = runtime_->CleanupStale();
      EXPECT_TRUE(st) << st.error().message();
    }
    runtime_.reset();
    std::error_code ec;
    if (!scratch_.empty()) std::filesystem::remove_all(scratch_, ec);
  }

  InstanceSpec Spec(const std::string& id) {
    InstanceSpec spec;
    spec.id = id;
    spec.rootfs = rootfs_;
    spec.envd_binary = envd_;
    spec.limits.memory_bytes = 256 << 20;
    spec.limits.disk_bytes = 64 << 20;
    spec.limits.pids = 64;
    return spec;
  }

  std::unique_ptr<Instance> MustCreate(const InstanceSpec& spec) {
    auto inst = runtime_->Create(spec);
    EXPECT_TRUE(inst) << inst.error().message();
    return inst ? std::move(*inst) : nullptr;
  }

  std::filesystem::path rootfs_, envd_, scratch_;
  std::string name_;
  NsRuntimeOptions options_;
  std::unique_ptr<NsRuntime> runtime_;
};

TEST_F(NsRuntimeTest, CreateAnswersHealth) {
  auto inst = MustCreate(Spec("health"));
  ASSERT_TRUE(inst);
  auto status = GetHealth(*inst);
  ASSERT_TRUE(status) << status.error().message();
  EXPECT_EQ(*status, 204);
  ASSERT_TRUE(inst->Kill());
}

TEST_F(NsRuntimeTest, CommandRunsIsolated) {
  auto inst = MustCreate(Spec("iso"));
  ASSERT_TRUE(inst);
  auto r = RunCommand(*inst, "id; grep -E 'Cap|NoNewPrivs|Seccomp' /proc/self/status");
  ASSERT_TRUE(r) << r.error().message();
  std::cout << r->output;
  EXPECT_EQ(r->exit_code, 0);
}

}  // namespace
}  // namespace kiln::kilnd::ns
