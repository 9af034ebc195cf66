#include "envd/process/process_table.h"

#include <signal.h>

namespace kiln::envd {

void ProcessTable::Add(std::shared_ptr<ManagedProcess> proc) {
  Prune();
  pid_t pid = proc->pid();
  by_pid_[pid] = std::move(proc);
}

std::shared_ptr<ManagedProcess> ProcessTable::FindUnreaped(pid_t pid) const {
  auto it = by_pid_.find(pid);
  if (it == by_pid_.end() || it->second->exited()) return nullptr;
  return it->second;
}

Result<std::shared_ptr<ManagedProcess>> ProcessTable::Find(const wire::ProcessSelector& selector,
                                                           bool include_exited) {
  Prune();
  if (selector.pid) {
    auto it = by_pid_.find(static_cast<pid_t>(*selector.pid));
    if (it != by_pid_.end() && (include_exited || !it->second->exited())) return it->second;
    return Fail(Errc::kNotFound, "process with pid " + std::to_string(*selector.pid) + " not found");
  }
  std::shared_ptr<ManagedProcess> best;
  for (const auto& [pid, proc] : by_pid_) {
    if (proc->tag() != selector.tag) continue;
    if (!proc->exited()) return proc;
    if (include_exited && (!best || proc->finished_at() > best->finished_at())) best = proc;
  }
  if (best) return best;
  return Fail(Errc::kNotFound, "process with tag '" + selector.tag.value_or("") + "' not found");
}

std::vector<std::shared_ptr<ManagedProcess>> ProcessTable::Running() const {
  std::vector<std::shared_ptr<ManagedProcess>> out;
  for (const auto& [pid, proc] : by_pid_) {
    if (!proc->exited()) out.push_back(proc);
  }
  return out;
}

void ProcessTable::KillAll() {
  for (const auto& proc : Running()) (void)proc->Signal(SIGKILL);
}

void ProcessTable::Prune() {
  auto now = std::chrono::steady_clock::now();
  std::erase_if(by_pid_, [&](const auto& entry) {
    const ManagedProcess& p = *entry.second;
    return p.finished() && now - p.finished_at() > kRetention;
  });
}

}  // namespace kiln::envd
