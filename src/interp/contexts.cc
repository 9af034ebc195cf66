#include "interp/contexts.h"

#include <sys/stat.h>

#include "base/log.h"
#include "base/scope_exit.h"
#include "sys/users.h"

namespace kiln::interp {
namespace {

std::string Evalue(const nlohmann::json& content) {
  auto it = content.find("evalue");
  return it != content.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

ExecuteOptions CellOptions() {
  ExecuteOptions options;
  options.stop_on_error = false;
  return options;
}

http::Task<Result<ExecuteReply>> RunSilent(Kernel& kernel, std::string code) {
  ExecuteOptions options = CellOptions();
  options.silent = true;
  options.store_history = false;
  co_return co_await kernel.Execute(std::move(code), options, nullptr);
}

Contexts::Contexts(boost::asio::any_io_executor executor, ContextOptions options)
    : executor_(std::move(executor)), options_(std::move(options)) {
  for (Language l : {Language::kPython, Language::kJavaScript, Language::kBash}) {
    default_locks_[l] = std::make_unique<AsyncMutex>();
  }
}

Result<KernelLaunch> Contexts::Launch(Language language, const std::string& cwd) const {
  KernelLaunch launch;
  launch.argv = KernelArgv(language, options_.python_dir, options_.python_launcher);
  launch.env = options_.env;
  launch.cwd = cwd;
  launch.runtime_dir = options_.runtime_dir;
  launch.start_timeout = options_.start_timeout;
  launch.log_fd = options_.kernel_log_fd;
  if (!options_.user.empty()) {
    sys::UserDb users;
    KILN_ASSIGN_OR_RETURN(sys::UserInfo user, users.Lookup(options_.user));
    launch.uid = user.uid;
    launch.gid = user.gid;
    launch.groups = user.groups;
    launch.env.push_back("HOME=" + user.home);
    launch.env.push_back("USER=" + user.name);
    launch.env.push_back("LOGNAME=" + user.name);
  } else {
    launch.uid = getuid();
    launch.gid = getgid();
  }
  launch.env.push_back("PYTHONPATH=" + options_.python_dir.string());
  // ipykernel exits when this process goes away (it polls its parent).
  launch.env.push_back("JPY_PARENT_PID=" + std::to_string(getpid()));
  return launch;
}

http::Task<Result<std::shared_ptr<Kernel>>> Contexts::StartKernel(Language language,
                                                                  const std::string& cwd) {
  KILN_CO_ASSIGN_OR_RETURN(KernelLaunch launch, Launch(language, cwd));
  auto started = co_await Kernel::Start(executor_, std::move(launch));
  if (!started) {
    co_return Unexpected(std::move(started).error().Wrap(std::string("start ") +
                                                         std::string(LanguageName(language)) + " kernel"));
  }
  std::shared_ptr<Kernel> kernel = std::move(*started);
  if (std::string setup = KernelSetupCode(language); !setup.empty()) {
    auto reply = co_await RunSilent(*kernel, std::move(setup));
    if (!reply) co_return Unexpected(std::move(reply).error().Wrap("kernel setup"));
    if (reply->status != "ok") {
      // The kernel works without our display helpers; say why charts will be missing.
      KILN_LOG(Warn, "kernel setup code failed", {"language", std::string(LanguageName(language))},
               {"error", Evalue(reply->content)});
    }
  }
  auto chdir = co_await RunSilent(*kernel, ChdirCode(language, cwd));
  if (!chdir) co_return Unexpected(std::move(chdir).error().Wrap("kernel chdir"));
  if (chdir->status != "ok") {
    co_return Unexpected(Error(Errc::kInvalidArgument, "cannot change to " + cwd + ": " +
                                                           Evalue(chdir->content)));
  }
  co_return kernel;
}

http::Task<Result<std::shared_ptr<Context>>> Contexts::Create(Language language, std::string cwd) {
  if (cwd.empty()) cwd = options_.default_cwd;
  struct stat st{};
  if (cwd.front() != '/' || stat(cwd.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
    co_return Unexpected(Error(Errc::kInvalidArgument, "cwd " + cwd + " is not a directory"));
  }
  KILN_CO_ASSIGN_OR_RETURN(std::shared_ptr<Kernel> kernel, co_await StartKernel(language, cwd));
  auto context = std::make_shared<Context>();
  context->id = NewMessageId();
  context->language = language;
  context->cwd = cwd;
  context->kernel = std::move(kernel);
  contexts_[context->id] = context;
  KILN_LOG(Info, "context created", {"id", context->id},
           {"language", std::string(LanguageName(language))}, {"cwd", cwd});
  co_return context;
}

http::Task<Result<std::shared_ptr<Context>>> Contexts::Default(Language language) {
  AsyncMutex& lock = *default_locks_[language];
  co_await lock.Lock();
  ScopeExit unlock([&lock] { lock.Unlock(); });
  if (auto it = defaults_.find(language); it != defaults_.end()) {
    if (auto context = Find(it->second)) co_return context;
  }
  KILN_CO_ASSIGN_OR_RETURN(auto context, co_await Create(language, ""));
  defaults_[language] = context->id;
  co_return context;
}

std::shared_ptr<Context> Contexts::Find(const std::string& id) const {
  auto it = contexts_.find(id);
  return it == contexts_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Context>> Contexts::List() const {
  std::vector<std::shared_ptr<Context>> out;
  for (const auto& [id, context] : contexts_) out.push_back(context);
  return out;
}

http::Task<Status> Contexts::Revive(Context& context) {
  KILN_CO_ASSIGN_OR_RETURN(auto kernel, co_await StartKernel(context.language, context.cwd));
  context.kernel = std::move(kernel);
  context.global_env_applied = false;
  context.user_code_ran = false;
  co_return Status();
}

http::Task<Status> Contexts::Restart(std::shared_ptr<Context> context) {
  context->restarting = true;
  if (context->kernel) context->kernel->Kill();
  co_await context->mutex.Lock();
  ScopeExit unlock([&context] {
    context->restarting = false;
    context->mutex.Unlock();
  });
  if (context->removed) co_return Unexpected(Error(Errc::kNotFound, "Context " + context->id + " not found"));
  if (context->kernel) context->kernel->Kill();
  context->kernel.reset();
  KILN_LOG(Info, "context restarting", {"id", context->id});
  co_return co_await Revive(*context);
}

Status Contexts::Remove(const std::string& id) {
  auto it = contexts_.find(id);
  if (it == contexts_.end()) return Fail(Errc::kNotFound, "Context " + id + " not found");
  it->second->removed = true;
  if (it->second->kernel) it->second->kernel->Kill();
  for (auto d = defaults_.begin(); d != defaults_.end();) {
    d = d->second == id ? defaults_.erase(d) : std::next(d);
  }
  contexts_.erase(it);
  KILN_LOG(Info, "context removed", {"id", id});
  return {};
}

}  // namespace kiln::interp
