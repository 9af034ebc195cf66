#include "kilnd/template/template_store.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/log.h"
#include "base/unique_fd.h"
#include "kilnd/template/apt_sources.h"
#include "kilnd/template/build_dir.h"

namespace kiln::kilnd::tmpl {
namespace {

using json = nlohmann::json;

constexpr int kFormat = 1;
constexpr char kInfoFile[] = "template.json";
constexpr char kRootfsDir[] = "rootfs";
constexpr char kLockFile[] = ".lock";

std::string NowRfc3339() {
  time_t now = time(nullptr);
  tm utc{};
  gmtime_r(&now, &utc);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

Result<std::string> ReadSmallFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return Fail(Errc::kNotFound, path.string() + " does not exist");
    return FailErrno("open " + path.string());
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Status WriteNewFile(const std::filesystem::path& path, std::string_view content) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return FailErrno("create " + path.string());
  while (!content.empty()) {
    ssize_t n = write(fd.get(), content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("write " + path.string());
    content.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

// Holds the store's build lock (flock on <store>/.lock) until destroyed.
Result<UniqueFd> LockStore(const std::filesystem::path& dir, const ProgressFn& progress) {
  std::filesystem::path path = dir / kLockFile;
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return FailErrno("open " + path.string());
  if (flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return fd;
  if (errno != EWOULDBLOCK) return FailErrno("flock " + path.string());
  if (progress) progress({"waiting", "another process is building a template", 0});
  while (flock(fd.get(), LOCK_EX) < 0) {
    if (errno != EINTR) return FailErrno("flock " + path.string());
  }
  return fd;
}

// Moves the finished build directory to `final`. An existing template there is swapped
// atomically into `build`'s place, whose owner then deletes it.
Status Install(const std::filesystem::path& build, const std::filesystem::path& final) {
  if (renameat2(AT_FDCWD, build.c_str(), AT_FDCWD, final.c_str(), RENAME_NOREPLACE) == 0) {
    return {};
  }
  if (errno != EEXIST) return FailErrno("rename " + build.string() + " to " + final.string());
  if (renameat2(AT_FDCWD, build.c_str(), AT_FDCWD, final.c_str(), RENAME_EXCHANGE) < 0) {
    return FailErrno("exchange " + build.string() + " with " + final.string());
  }
  return {};
}

// Flushes the new tree to disk before it becomes visible under its final name, so that a
// crash cannot leave a template whose metadata says "built" over files that never arrived.
Status SyncFilesystem(const std::filesystem::path& dir) {
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + dir.string());
  if (syncfs(fd.get()) < 0) return FailErrno("syncfs " + dir.string());
  return {};
}

}  // namespace

std::string TemplateInfoToJson(const TemplateInfo& info) {
  json j = json::object();
  j["format"] = kFormat;
  j["name"] = info.name;
  j["recipe"] = info.recipe;
  j["created_at"] = info.created_at;
  j["default_user"] = info.default_user;
  j["workdir"] = info.workdir;
  j["env"] = json::object();
  for (const auto& [key, value] : info.env) j["env"][key] = value;
  if (!info.start_cmd.empty()) {
    j["start_cmd"] = info.start_cmd;
    j["ready_port"] = info.ready_port;
    j["ready_path"] = info.ready_path;
  }
  return j.dump(2) + "\n";
}

Result<TemplateInfo> ParseTemplateInfo(std::string_view text, const std::filesystem::path& rootfs) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Fail(Errc::kInvalidArgument, "template metadata is not a JSON object");
  }
  TemplateInfo info;
  info.rootfs = rootfs;
  auto str = [&](const char* key, std::string& out, bool required) -> Status {
    auto it = j.find(key);
    if (it == j.end() && !required) return {};
    if (it == j.end() || !it->is_string()) {
      return Fail(Errc::kInvalidArgument, std::string("template metadata: bad \"") + key + "\"");
    }
    out = it->get<std::string>();
    return {};
  };
  KILN_TRY(str("name", info.name, true));
  KILN_TRY(str("recipe", info.recipe, true));
  KILN_TRY(str("created_at", info.created_at, false));
  KILN_TRY(str("default_user", info.default_user, false));
  KILN_TRY(str("workdir", info.workdir, false));
  if (auto it = j.find("env"); it != j.end()) {
    if (!it->is_object()) return Fail(Errc::kInvalidArgument, "template metadata: bad \"env\"");
    for (const auto& [key, value] : it->items()) {
      if (!value.is_string()) {
        return Fail(Errc::kInvalidArgument, "template metadata: env " + key + " is no string");
      }
      info.env[key] = value.get<std::string>();
    }
  }
  if (auto it = j.find("start_cmd"); it != j.end()) {
    if (!it->is_array()) return Fail(Errc::kInvalidArgument, "template metadata: bad \"start_cmd\"");
    for (const auto& arg : *it) {
      if (!arg.is_string()) return Fail(Errc::kInvalidArgument, "template metadata: bad \"start_cmd\"");
      info.start_cmd.push_back(arg.get<std::string>());
    }
    auto port = j.find("ready_port");
    if (port == j.end() || !port->is_number_unsigned() || port->get<uint64_t>() > 65535) {
      return Fail(Errc::kInvalidArgument, "template metadata: bad \"ready_port\"");
    }
    info.ready_port = static_cast<uint16_t>(port->get<uint64_t>());
    KILN_TRY(str("ready_path", info.ready_path, true));
  }
  return info;
}

TemplateStore::TemplateStore(std::filesystem::path dir, StoreOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

const Recipe* TemplateStore::FindRecipe(std::string_view name) const {
  auto it = std::ranges::find_if(options_.recipes, [&](const Recipe& r) {
    return r.name == name || std::ranges::find(r.aliases, name) != r.aliases.end();
  });
  return it == options_.recipes.end() ? nullptr : &*it;
}

std::string TemplateStore::FullStamp(const Recipe& recipe) const {
  std::string stamp = recipe.Stamp();
  const Recipe* r = &recipe;
  // A cycle in the recipes (a bug) must not loop forever.
  for (int depth = 0; depth < 8 && !r->parent.empty(); ++depth) {
    r = FindRecipe(r->parent);
    if (r == nullptr) break;
    stamp.append(" | ").append(r->Stamp());
  }
  return stamp;
}

Result<TemplateInfo> TemplateStore::Get(std::string_view name) const {
  // SECURITY: `name` may come from an API request; it becomes a path component here.
  if (!IsValidTemplateName(name)) {
    return Fail(Errc::kInvalidArgument, "invalid template name '" + log::Sanitize(name, 80) + "'");
  }
  const Recipe* recipe = FindRecipe(name);
  if (recipe != nullptr) name = recipe->name;  // an alias
  std::filesystem::path dir = dir_ / name;
  std::string quoted = "template '" + std::string(name) + "'";
  auto text = ReadSmallFile(dir / kInfoFile);
  if (!text) {
    if (text.error().code() == Errc::kNotFound)
      return Fail(Errc::kNotFound, quoted + " is not built");
    return Unexpected(std::move(text).error());
  }
  auto info = ParseTemplateInfo(*text, dir / kRootfsDir);
  if (!info || info->name != name) {
    return Fail(Errc::kNotFound,
                quoted + " has unreadable metadata in " + (dir / kInfoFile).string());
  }
  if (recipe != nullptr && info->recipe != FullStamp(*recipe)) {
    return Fail(Errc::kNotFound, quoted + " was built from an older recipe (" + info->recipe + ")");
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(info->rootfs, ec)) {
    return Fail(Errc::kNotFound, quoted + " has no rootfs");
  }
  return info;
}

std::vector<TemplateInfo> TemplateStore::List() const {
  std::vector<TemplateInfo> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!IsValidTemplateName(name)) continue;  // also skips .lock and .build-*
    if (auto info = Get(name)) out.push_back(std::move(*info));
  }
  std::ranges::sort(out, {}, &TemplateInfo::name);
  return out;
}

Result<TemplateInfo> TemplateStore::EnsureBuilt(std::string_view name,
                                                const std::filesystem::path& envd_binary,
                                                const ProgressFn& progress) const {
  const Recipe* recipe = FindRecipe(name);
  if (recipe == nullptr) {
    return Fail(Errc::kNotFound, "no recipe for template '" + log::Sanitize(name, 80) + "'");
  }
  if (auto info = Get(name)) return info;
  std::filesystem::path parent_rootfs;
  if (!recipe->parent.empty()) {
    // Before taking the lock: the parent's EnsureBuilt takes it too.
    KILN_ASSIGN_OR_RETURN(TemplateInfo parent, EnsureBuilt(recipe->parent, envd_binary, progress));
    parent_rootfs = parent.rootfs;
  }

  std::error_code ec;
  if (!std::filesystem::is_regular_file(envd_binary, ec)) {
    return Fail(Errc::kNotFound, "kiln-envd binary " + envd_binary.string() + " not found");
  }
  std::filesystem::create_directories(dir_, ec);
  if (ec) return Fail(Errc::kInternal, "create " + dir_.string() + ": " + ec.message());
  KILN_ASSIGN_OR_RETURN(UniqueFd lock, LockStore(dir_, progress));
  if (auto info = Get(name)) return info;  // built by the process we waited for
  auto built = Build(*recipe, envd_binary, parent_rootfs, progress);
  if (!built) return Unexpected(std::move(built).error().Wrap("build template " + recipe->name));
  return built;
}

// REQUIRES: the store lock is held.
Result<TemplateInfo> TemplateStore::Build(const Recipe& recipe,
                                          const std::filesystem::path& envd_binary,
                                          const std::filesystem::path& parent_rootfs,
                                          const ProgressFn& progress) const {
  auto report = [&](const char* phase, std::string detail, int percent) {
    if (progress) progress(BuildProgress{phase, std::move(detail), percent});
  };
  report("prepare", "removing interrupted builds", 0);
  RemoveStaleBuildDirs(dir_);
  KILN_ASSIGN_OR_RETURN(BuildDir build, BuildDir::Create(dir_, recipe.name));
  std::filesystem::path rootfs = build.path() / kRootfsDir;
  if (mkdir(rootfs.c_str(), 0755) < 0) return FailErrno("mkdir " + rootfs.string());

  BuildJob job;
  job.recipe = recipe;
  job.rootfs = rootfs;
  job.envd_binary = envd_binary;
  job.parent_rootfs = parent_rootfs;
  job.mirror = options_.mirror.empty() ? HostDebianMirror() : options_.mirror;
  job.progress = progress;
  job.on_child = [&build](pid_t pid) {
    if (Status st = build.RecordBuilder(pid); !st) {
      KILN_LOG(Warn, "cannot record template builder", {"error", st.error().message()});
    }
  };
  KILN_LOG(Info, "building template", {"template", recipe.name}, {"mirror", job.mirror});
  KILN_TRY(options_.builder(job));
  build.ForgetBuilder();

  TemplateInfo info;
  info.name = recipe.name;
  info.rootfs = dir_ / recipe.name / kRootfsDir;
  info.default_user = recipe.default_user;
  info.workdir = recipe.workdir;
  info.env = recipe.env;
  info.created_at = NowRfc3339();
  info.recipe = FullStamp(recipe);
  info.start_cmd = recipe.start_cmd;
  info.ready_port = recipe.ready_port;
  info.ready_path = recipe.ready_path;
  KILN_TRY(WriteNewFile(build.path() / kInfoFile, TemplateInfoToJson(info)));
  report("install", "syncing and moving into place", 97);
  KILN_TRY(SyncFilesystem(build.path()));
  KILN_TRY(Install(build.path(), dir_ / recipe.name));
  // After an exchange, `build` holds the old template and deletes it when it goes out of scope.
  KILN_LOG(Info, "template built", {"template", recipe.name});
  report("done", "template " + recipe.name + " is ready", 100);
  return info;
}

}  // namespace kiln::kilnd::tmpl
