#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <vector>

#include "base/error.h"
#include "envd/process/managed_process.h"
#include "wire/process.h"

namespace kiln::envd {

// The processes the agent started, by pid: running ones, and for kRetention after their end
// the finished ones (so that a late Connect still gets start + end). Lives on the io thread.
class ProcessTable {
 public:
  static constexpr auto kRetention = std::chrono::seconds(30);

  // Replaces a finished entry that had the same pid.
  void Add(std::shared_ptr<ManagedProcess> proc);
  // The tracked, not yet reaped process with this pid; nullptr for anything else.
  std::shared_ptr<ManagedProcess> FindUnreaped(pid_t pid) const;
  // By pid or tag; with `include_exited`, also processes that exited and are still retained
  // (a tag then prefers a running process). kNotFound when there is none.
  Result<std::shared_ptr<ManagedProcess>> Find(const wire::ProcessSelector& selector,
                                               bool include_exited);
  // Processes not yet reaped, by pid.
  std::vector<std::shared_ptr<ManagedProcess>> Running() const;
  // SIGKILLs every running process group.
  void KillAll();

 private:
  void Prune();

  std::map<pid_t, std::shared_ptr<ManagedProcess>> by_pid_;
};

}  // namespace kiln::envd
