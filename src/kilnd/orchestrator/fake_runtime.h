#pragma once

// A Runtime for tests of the orchestrator and the layers above it: instances are plain
// objects that record what was done to them; OpenSocket() gives an ordinary socket in the
// test's own network namespace, so the "agent" is whatever the test serves on loopback at
// ManagerOptions::agent_port. Test-only (no .cc: nothing of it is linked into kilnd).

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kilnd/runtime/runtime.h"

namespace kiln::kilnd::fakes {

// What the fake runtime saw; shared between the instances and the test.
struct Journal {
  std::mutex mu;
  std::vector<std::string> created, killed, frozen, thawed;
  std::vector<std::optional<std::filesystem::path>> files_from;
  std::vector<bool> egress;
  // When set (before the instances are made), Kill() waits for it; kills_waiting counts those
  // that are waiting or went through.
  std::shared_future<void> kill_gate;
  std::atomic<int> kills_waiting{0};
  // When set (before the instances are made), ExitFd() works: readable once Kill() ran.
  bool exit_fds = false;
  // When set, ExitFd() fails with this code (an instance gone meanwhile, no fds left).
  std::optional<Errc> exit_fd_error;
};

class FakeInstance : public Instance {
 public:
  FakeInstance(std::string id, std::shared_ptr<Journal> j) : id_(std::move(id)), j_(std::move(j)) {
    if (j_->exit_fds) exited_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  }
  ~FakeInstance() override { (void)Kill(); }
  const std::string& id() const override { return id_; }
  pid_t init_pid() const override { return 1; }
  Result<UniqueFd> OpenSocket() override {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return FailErrno("socket");
    return UniqueFd(fd);
  }
  Status Freeze() override {
    std::lock_guard l(j_->mu);
    j_->frozen.push_back(id_);
    return {};
  }
  Status Thaw() override {
    std::lock_guard l(j_->mu);
    j_->thawed.push_back(id_);
    return {};
  }
  Status SetEgress(const EgressPolicy& p) override {
    std::lock_guard l(j_->mu);
    j_->egress.push_back(p.internet);
    return {};
  }
  Status SnapshotFiles(const std::filesystem::path& dest) override {
    std::filesystem::create_directories(dest);
    return {};
  }
  Result<InstanceStats> Stats() override {
    InstanceStats s;
    s.mem_used = 1 << 20;
    s.mem_total = 512 << 20;
    s.disk_total = 1 << 30;
    return s;
  }
  Result<UniqueFd> ExitFd() override {
    if (j_->exit_fd_error) return Fail(*j_->exit_fd_error, "fake exit watch fails");
    if (!exited_) return Fail(Errc::kUnimplemented, "no exit notification");
    int fd = fcntl(exited_.get(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return FailErrno("dup eventfd");
    return UniqueFd(fd);
  }
  Status Kill() override {
    if (killed_.exchange(true)) return {};
    if (exited_) {
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = write(exited_.get(), &one, sizeof one);
    }
    if (j_->kill_gate.valid()) {
      ++j_->kills_waiting;
      j_->kill_gate.wait();
    }
    std::lock_guard l(j_->mu);
    j_->killed.push_back(id_);
    return {};
  }

 private:
  std::string id_;
  std::shared_ptr<Journal> j_;
  std::atomic<bool> killed_{false};
  UniqueFd exited_;
};

class FakeRuntime : public Runtime {
 public:
  explicit FakeRuntime(std::shared_ptr<Journal> j, std::string name = "fake",
                       bool keeps_processes = false)
      : j_(std::move(j)), name_(std::move(name)), keeps_processes_(keeps_processes) {}
  std::string_view name() const override { return name_; }
  bool snapshots_keep_processes() const override { return keeps_processes_; }
  Result<std::unique_ptr<Instance>> Create(const InstanceSpec& spec) override {
    std::lock_guard l(j_->mu);
    j_->created.push_back(spec.id);
    j_->files_from.push_back(spec.files_from);
    return std::make_unique<FakeInstance>(spec.id, j_);
  }
  Status CleanupStale() override { return {}; }

 private:
  std::shared_ptr<Journal> j_;
  std::string name_;
  bool keeps_processes_;
};

}  // namespace kiln::kilnd::fakes
