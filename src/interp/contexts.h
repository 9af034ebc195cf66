#pragma once

// Code contexts: one kernel each (e2b-compat.md §4.1). A context has an id (what clients name
// it by), a language, a working directory and a kernel that may be restarted under the same
// id. Executions in one context run one at a time (its mutex).

#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "http/server.h"
#include "interp/async_mutex.h"
#include "interp/kernel.h"
#include "interp/language.h"

namespace kiln::interp {

// Runs setup code (env vars, directory changes): silent, not in the history. Like every
// execution of kiln-interp it sets stop_on_error false: ipykernel would otherwise abort the
// request queued right after a failed one.
http::Task<Result<ExecuteReply>> RunSilent(Kernel& kernel, std::string code);
// The options of a user's cell.
ExecuteOptions CellOptions();

struct ContextOptions {
  // Connection files and ipc sockets go below (one private directory per kernel).
  std::filesystem::path runtime_dir = "/run/kiln-interp";
  // kiln_display.py, kiln_ipykernel.py and the wrapper kernels (put on the kernels' PYTHONPATH).
  std::filesystem::path python_dir = "/run/kiln-interp/python";
  // kFast: python kernels through kiln_ipykernel.py; kStock: `python3 -m ipykernel_launcher`.
  PythonLauncher python_launcher = PythonLauncher::kFast;
  // Kernels run as this user, with its groups; "" keeps kiln-interp's identity.
  std::string user = "user";
  std::string default_cwd = "/home/user";
  // The kernels' environment (HOME, USER, PATH, ... are added from the user's entry).
  std::vector<std::string> env;
  std::chrono::milliseconds start_timeout{60000};
  int kernel_log_fd = -1;
};

struct Context {
  std::string id;
  Language language = Language::kPython;
  std::string cwd;
  // The running kernel; replaced on restart (an Execute holds its own reference).
  std::shared_ptr<Kernel> kernel;
  AsyncMutex mutex;
  // Whether the sandbox's global env vars went into this kernel (redone after a restart).
  bool global_env_applied = false;
  // The clock generation (ClockJumpDetector) its kernel's random generators were seeded in.
  uint64_t seeded_generation = 0;
  // Whether its kernel ran any of the user's code (not only kiln-interp's own): then a restore
  // is its own sandbox's resume, not a copy of the template's snapshot, and it is not reseeded.
  bool user_code_ran = false;
  bool removed = false;
  // Set by Restart from the moment it kills the kernel until the new one runs, so that the
  // execution it cut short reports a restart (and leaves the new kernel to Restart).
  bool restarting = false;
};

class Contexts {
 public:
  Contexts(boost::asio::any_io_executor executor, ContextOptions options);

  // Starts a kernel for `language` in `cwd` ("" -> default_cwd): our setup code, then the
  // directory change. kInvalidArgument for a cwd that is not a directory; kernel start errors
  // otherwise.
  http::Task<Result<std::shared_ptr<Context>>> Create(Language language, std::string cwd);
  // The default context of `language`, created on first use.
  http::Task<Result<std::shared_ptr<Context>>> Default(Language language);
  std::shared_ptr<Context> Find(const std::string& id) const;
  std::vector<std::shared_ptr<Context>> List() const;

  // Kills the kernel at once (a running execution ends with an error), then, in turn with
  // the context's executions, starts a new one with the same id and cwd.
  http::Task<Status> Restart(std::shared_ptr<Context> context);
  // Starts a new kernel for a context whose kernel died. REQUIRES: context->mutex held.
  http::Task<Status> Revive(Context& context);
  // kNotFound for an unknown id.
  Status Remove(const std::string& id);

 private:
  http::Task<Result<std::shared_ptr<Kernel>>> StartKernel(Language language, const std::string& cwd);
  Result<KernelLaunch> Launch(Language language, const std::string& cwd) const;

  boost::asio::any_io_executor executor_;
  ContextOptions options_;
  std::map<std::string, std::shared_ptr<Context>> contexts_;
  std::map<Language, std::string> defaults_;
  // Serialises the first creation of each default context.
  std::map<Language, std::unique_ptr<AsyncMutex>> default_locks_;
};

}  // namespace kiln::interp
