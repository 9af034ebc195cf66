#pragma once

// One confined QEMU process and its QMP connection, driven synchronously (the runtime's
// calls are blocking; each QemuProcess has a private io_context that runs only inside its own
// calls). QEMU connects to a QMP socket kiln listens on, so there is no race on its creation.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>  // before Boost 1.74's awaitable.hpp, which uses std::exchange
// clang-format off
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>
// clang-format on

#include "base/error.h"
#include "base/unique_fd.h"
#include "kilnd/cgroup/cgroup.h"
#include "kilnd/runtime/vm/child_process.h"
#include "kilnd/runtime/vm/microvm.h"
#include "kilnd/runtime/vm/qmp.h"

namespace kiln::kilnd::vm {

struct QemuLaunch {
  MicrovmConfig config;  // qmp_socket and tap_fd are set by Start
  // Directory for the QMP socket; QEMU's uid must be able to reach it.
  std::filesystem::path run_dir;
  uid_t uid = 0;  // 0: QEMU stays root (tests)
  gid_t gid = 0;
  int netns_fd = -1;  // the network namespace QEMU runs in; -1: kilnd's
  int tap_fd = -1;    // handed to QEMU as its NIC (fd 3); -1: no NIC
  // QEMU runs in this group from its first instruction when set.
  cgroup::Cgroup* cgroup = nullptr;
  std::chrono::milliseconds timeout{10000};  // start-up (QMP handshake) and each QMP call
};

class QemuProcess {
 public:
  using Json = nlohmann::json;

  // Spawns QEMU (new process group, own mount/ipc/uts namespaces, no_new_privs, killed if
  // kilnd dies), accepts its QMP connection and negotiates. An early exit reads
  // "qemu exited with status 1: <its stderr>".
  static Result<std::unique_ptr<QemuProcess>> Start(QemuLaunch launch);
  ~QemuProcess();  // kills QEMU

  QemuProcess(const QemuProcess&) = delete;
  QemuProcess& operator=(const QemuProcess&) = delete;

  pid_t pid() const { return child_.pid(); }
  int pidfd() const { return child_.pidfd(); }

  // A QMP command; its "return" value.
  Result<Json> Execute(const std::string& command, const Json& arguments);
  Result<Json> Execute(const std::string& command) { return Execute(command, Json()); }
  // Hands QEMU a descriptor under `name` (getfd).
  Status SendFd(const std::string& name, int fd);
  // Waits for the MIGRATION event with status "completed" (migration "events" capability
  // on); kInternal for "failed"/"cancelled", kTimeout.
  Status WaitMigration(std::chrono::milliseconds timeout);
  // "running", "paused", "inmigrate", "postmigrate", ...
  Result<std::string> RunState();

  // Asks QEMU to quit and waits for it; kills it if it does not within the timeout.
  Status Quit();
  void Kill();
  // What QEMU wrote to its stderr so far (the last few KiB).
  std::string Stderr();

 private:
  QemuProcess() = default;
  Error Failure(Error e);  // e, with QEMU's exit status and stderr if it died

  boost::asio::io_context io_;
  ChildProcess child_;
  UniqueFd stderr_;  // read end of QEMU's (non-blocking) stderr pipe
  std::string stderr_text_;
  std::unique_ptr<QmpClient> qmp_;
  std::chrono::milliseconds timeout_{10000};
};

}  // namespace kiln::kilnd::vm
