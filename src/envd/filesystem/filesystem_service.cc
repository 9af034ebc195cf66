#include "envd/filesystem/filesystem_service.h"

#include <sys/random.h>
#include <sys/stat.h>

#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <charconv>
#include <vector>

#include "base/encoding.h"
#include "base/scope_exit.h"
#include "envd/filesystem/dir_watcher.h"
#include "envd/filesystem/entry_info.h"
#include "envd/filesystem/fs_ops.h"
#include "wire/json_util.h"

namespace kiln::envd {
namespace {

using nlohmann::json;
using http::connect::CallContext;
using http::connect::ServerStream;
using Clock = std::chrono::steady_clock;

// Resolves the path field `camel` for `user`. SECURITY: client-controlled; NUL bytes and
// overlong paths are rejected before the path reaches a syscall.
Result<std::string> ResolvePathField(const AgentState& state, const sys::UserInfo& user,
                                     const json& req, std::string_view camel, bool allow_empty) {
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> raw, wire::GetString(req, camel));
  std::string value = raw.value_or("");
  if (value.empty() && !allow_empty) {
    return Fail(Errc::kInvalidArgument, "field '" + std::string(camel) + "' must not be empty");
  }
  KILN_TRY(fsops::CheckClientPath(value));
  return state.ResolvePath(value, user);
}

Result<bool> BoolField(const json& req, std::string_view camel, std::string_view snake) {
  KILN_ASSIGN_OR_RETURN(std::optional<bool> v, wire::GetBool(req, camel, snake));
  return v.value_or(false);
}

fsops::Owner OwnerOf(const sys::UserInfo& user) { return fsops::Owner{user.uid, user.gid}; }

json EntryResponse(const EntryInfo& entry) {
  json j = json::object();
  j["entry"] = EntryInfoToJson(entry);
  return j;
}

// Upstream's order for one inotify event carrying several operations.
constexpr std::array<std::pair<uint32_t, std::string_view>, 5> kEventTypes = {{
    {sys::kWatchCreate, "EVENT_TYPE_CREATE"},
    {sys::kWatchRename, "EVENT_TYPE_RENAME"},
    {sys::kWatchChmod, "EVENT_TYPE_CHMOD"},
    {sys::kWatchWrite, "EVENT_TYPE_WRITE"},
    {sys::kWatchRemove, "EVENT_TYPE_REMOVE"},
}};

// filesystem.FilesystemEvent messages for a batch of watch events, one per operation bit.
// With `include_entry`, create/write/chmod events carry the entry if it still exists.
std::vector<json> EventJsons(const std::vector<sys::WatchEvent>& events, const std::string& root,
                             bool include_entry, const sys::UserDb& users) {
  OwnerNames names(users);
  std::vector<json> out;
  for (const sys::WatchEvent& ev : events) {
    for (const auto& [bit, type] : kEventTypes) {
      if (!(ev.ops & bit)) continue;
      json j = json::object();
      j["name"] = ev.name;
      j["type"] = type;
      if (include_entry && (bit & (sys::kWatchCreate | sys::kWatchWrite | sys::kWatchChmod))) {
        std::string path = ev.name == "." ? root : fsops::JoinPath(root, ev.name);
        auto entry = ReadEntryInfo(path, names);
        if (entry) j["entry"] = EntryInfoToJson(*entry);
      }
      out.push_back(std::move(j));
    }
  }
  return out;
}

json EntriesResponse(const std::vector<EntryInfo>& entries) {
  json list = json::array();
  for (const EntryInfo& e : entries) list.push_back(EntryInfoToJson(e));
  json out = json::object();
  out["entries"] = std::move(list);
  return out;
}

json StreamMessage(std::string_view kind, json value) {
  json j = json::object();
  j[std::string(kind)] = std::move(value);
  return j;
}

}  // namespace

struct FilesystemService::ListSpec {
  std::string path;
  uint32_t depth = 1;
};

struct FilesystemService::WatchSpec {
  std::string path;
  bool recursive = false;
  bool include_entry = false;
};

FilesystemService::FilesystemService(boost::asio::io_context& io, AgentState& state)
    : io_(io), state_(state) {}

FilesystemService::~FilesystemService() {
  for (auto& [id, w] : watchers_) w.watcher->Stop();
}

void FilesystemService::Register(http::Router& router) {
  namespace connect = http::connect;
  using Sync = Result<json> (FilesystemService::*)(const CallContext&, const json&);
  using Async = http::Task<Result<json>> (FilesystemService::*)(const CallContext&, const json&);
  auto sync = [&](std::string name, Sync m) {
    connect::AddUnary(router, "/filesystem.Filesystem/" + name,
                      [this, m](const CallContext& ctx, const json& req) -> http::Task<Result<json>> {
                        co_return (this->*m)(ctx, req);
                      });
  };
  auto async = [&](std::string name, Async m) {
    connect::AddUnary(router, "/filesystem.Filesystem/" + name,
                      [this, m](const CallContext& ctx, const json& req) {
                        return (this->*m)(ctx, req);
                      });
  };
  sync("Stat", &FilesystemService::Stat);
  async("ListDir", &FilesystemService::ListDir);
  sync("MakeDir", &FilesystemService::MakeDir);
  sync("Move", &FilesystemService::Move);
  async("Remove", &FilesystemService::Remove);
  async("CreateWatcher", &FilesystemService::CreateWatcher);
  sync("GetWatcherEvents", &FilesystemService::GetWatcherEvents);
  sync("RemoveWatcher", &FilesystemService::RemoveWatcher);
  connect::AddServerStream(router, "/filesystem.Filesystem/WatchDir",
                           [this](const CallContext& ctx, const json& req, ServerStream& stream) {
                             return WatchDir(ctx, req, stream);
                           });
}

http::Task<void> FilesystemService::Yield() {
  co_await boost::asio::post(io_, boost::asio::use_awaitable);
}

Result<json> FilesystemService::Stat(const CallContext& ctx, const json& req) {
  KILN_ASSIGN_OR_RETURN(sys::UserInfo user, state_.UserForRequest(ctx.head));
  KILN_ASSIGN_OR_RETURN(std::string path, ResolvePathField(state_, user, req, "path", true));
  OwnerNames names(state_.users);
  KILN_ASSIGN_OR_RETURN(EntryInfo entry, ReadEntryInfo(path, names));
  return EntryResponse(entry);
}

Result<FilesystemService::ListSpec> FilesystemService::ParseList(const CallContext& ctx,
                                                                 const json& req) {
  KILN_ASSIGN_OR_RETURN(sys::UserInfo user, state_.UserForRequest(ctx.head));
  ListSpec spec;
  KILN_ASSIGN_OR_RETURN(spec.path, ResolvePathField(state_, user, req, "path", true));
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> depth, wire::GetInt(req, "depth"));
  if (depth && (*depth < 0 || *depth > UINT32_MAX)) {
    return Fail(Errc::kInvalidArgument, "depth must be between 1 and 4294967295");
  }
  spec.depth = depth && *depth > 0 ? static_cast<uint32_t>(*depth) : 1;
  return spec;
}

http::Task<Result<json>> FilesystemService::ListDir(const CallContext& ctx, const json& req) {
  KILN_CO_ASSIGN_OR_RETURN(ListSpec spec, ParseList(ctx, req));
  KILN_CO_ASSIGN_OR_RETURN(fsops::ListDirWalk walk, fsops::ListDirWalk::Start(spec.path, spec.depth));
  OwnerNames names(state_.users);
  for (;;) {
    KILN_CO_TRY(walk.Step(names, kStepBudget));
    if (walk.done()) break;
    co_await Yield();
  }
  co_return EntriesResponse(walk.TakeEntries());
}

Result<json> FilesystemService::MakeDir(const CallContext& ctx, const json& req) {
  KILN_ASSIGN_OR_RETURN(sys::UserInfo user, state_.UserForRequest(ctx.head));
  KILN_ASSIGN_OR_RETURN(std::string path, ResolvePathField(state_, user, req, "path", true));
  KILN_TRY(fsops::MakeDir(path, OwnerOf(user)));
  OwnerNames names(state_.users);
  KILN_ASSIGN_OR_RETURN(EntryInfo entry, ReadEntryInfo(path, names));
  return EntryResponse(entry);
}

Result<json> FilesystemService::Move(const CallContext& ctx, const json& req) {
  KILN_ASSIGN_OR_RETURN(sys::UserInfo user, state_.UserForRequest(ctx.head));
  KILN_ASSIGN_OR_RETURN(std::string source, ResolvePathField(state_, user, req, "source", false));
  KILN_ASSIGN_OR_RETURN(std::string destination,
                        ResolvePathField(state_, user, req, "destination", false));
  KILN_TRY(fsops::Move(source, destination, OwnerOf(user)));
  OwnerNames names(state_.users);
  KILN_ASSIGN_OR_RETURN(EntryInfo entry, ReadEntryInfo(destination, names));
  return EntryResponse(entry);
}

Result<std::string> FilesystemService::ParseRemove(const CallContext& ctx, const json& req) {
  KILN_ASSIGN_OR_RETURN(sys::UserInfo user, state_.UserForRequest(ctx.head));
  return ResolvePathField(state_, user, req, "path", false);
}

http::Task<Result<json>> FilesystemService::Remove(const CallContext& ctx, const json& req) {
  KILN_CO_ASSIGN_OR_RETURN(std::string path, ParseRemove(ctx, req));
  KILN_CO_ASSIGN_OR_RETURN(fsops::TreeRemoval removal, fsops::TreeRemoval::Start(path));
  while (!removal.done()) {
    KILN_CO_TRY(removal.Step(kStepBudget));
    if (!removal.done()) co_await Yield();
  }
  co_return json::object();
}

Result<FilesystemService::WatchSpec> FilesystemService::ParseWatch(const CallContext& ctx,
                                                                   const json& req) {
  KILN_ASSIGN_OR_RETURN(sys::UserInfo user, state_.UserForRequest(ctx.head));
  WatchSpec spec;
  KILN_ASSIGN_OR_RETURN(spec.path, ResolvePathField(state_, user, req, "path", true));
  KILN_ASSIGN_OR_RETURN(spec.recursive, BoolField(req, "recursive", "recursive"));
  KILN_ASSIGN_OR_RETURN(spec.include_entry, BoolField(req, "includeEntry", "include_entry"));
  KILN_ASSIGN_OR_RETURN(bool allow_network,
                        BoolField(req, "allowNetworkMounts", "allow_network_mounts"));
  struct stat st;
  if (stat(spec.path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return Fail(Errc::kNotFound, "path not found: " + spec.path);
    }
    return FailErrno("stat " + spec.path);
  }
  if (!S_ISDIR(st.st_mode)) {
    return Fail(Errc::kInvalidArgument, "path is not a directory: " + spec.path);
  }
  if (!allow_network) {
    KILN_ASSIGN_OR_RETURN(bool network, fsops::IsNetworkFilesystem(spec.path));
    if (network) {
      return Fail(Errc::kInvalidArgument,
                  "cannot watch path on network filesystem: " + spec.path +
                      " (set allowNetworkMounts to watch it anyway)");
    }
  }
  return spec;
}

http::Task<Result<std::shared_ptr<DirWatcher>>> FilesystemService::StartWatch(
    const WatchSpec& spec) {
  KILN_CO_ASSIGN_OR_RETURN(sys::InotifyWatch watch,
                           sys::InotifyWatch::OpenRoot(spec.path, spec.recursive));
  for (;;) {
    KILN_CO_TRY(watch.ContinueSetup(kStepBudget));
    if (watch.setup_done()) break;
    co_await Yield();
  }
  co_return DirWatcher::Start(io_, std::move(watch), kMaxPendingEvents);
}

http::Task<Status> FilesystemService::WatchDir(const CallContext& ctx, const json& req,
                                               ServerStream& stream) {
  KILN_CO_ASSIGN_OR_RETURN(WatchSpec spec, ParseWatch(ctx, req));
  KILN_CO_ASSIGN_OR_RETURN(std::shared_ptr<DirWatcher> watcher, co_await StartWatch(spec));
  ScopeExit stop([&watcher] { watcher->Stop(); });
  KILN_CO_TRY(co_await stream.Send(StreamMessage("start", json::object())));
  const std::chrono::seconds keepalive =
      http::connect::KeepaliveInterval(ctx.head, FilesystemService::kDefaultKeepalive);
  Clock::time_point last_sent = Clock::now();
  for (;;) {
    Clock::time_point wake = last_sent + keepalive;
    if (ctx.deadline && *ctx.deadline < wake) wake = *ctx.deadline;
    co_await watcher->Wait(wake);
    std::vector<json> events =
        EventJsons(watcher->Take(), spec.path, spec.include_entry, state_.users);
    for (json& event : events) {
      KILN_CO_TRY(co_await stream.Send(StreamMessage("filesystem", std::move(event))));
      last_sent = Clock::now();
    }
    if (watcher->error()) co_return Unexpected(*watcher->error());
    Clock::time_point now = Clock::now();
    if (ctx.deadline && now >= *ctx.deadline) {
      co_return Fail(Errc::kTimeout, "watch of " + spec.path + " reached its deadline");
    }
    if (now - last_sent >= keepalive) {
      KILN_CO_TRY(co_await stream.Send(StreamMessage("keepalive", json::object())));
      last_sent = now;
    }
  }
}

std::string FilesystemService::NewWatcherId() {
  std::array<char, 8> bytes{};
  if (getrandom(bytes.data(), bytes.size(), GRND_NONBLOCK) != static_cast<ssize_t>(bytes.size())) {
    // Uniqueness, not secrecy, is what matters for ids; the counter below guarantees it.
    bytes.fill(0);
  }
  return HexEncode(std::string_view(bytes.data(), bytes.size())) + "-" +
         std::to_string(++watcher_counter_);
}

http::Task<Result<json>> FilesystemService::CreateWatcher(const CallContext& ctx,
                                                          const json& req) {
  KILN_CO_ASSIGN_OR_RETURN(WatchSpec spec, ParseWatch(ctx, req));
  KILN_CO_ASSIGN_OR_RETURN(std::shared_ptr<DirWatcher> watcher, co_await StartWatch(spec));
  co_return AddWatcher(std::move(watcher), spec.include_entry);
}

json FilesystemService::AddWatcher(std::shared_ptr<DirWatcher> watcher, bool include_entry) {
  std::string id = NewWatcherId();
  watchers_[id] = Watcher{std::move(watcher), include_entry};
  json out = json::object();
  out["watcherId"] = id;
  return out;
}

Result<json> FilesystemService::GetWatcherEvents(const CallContext& ctx, const json& req) {
  (void)ctx;
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> id, wire::GetString(req, "watcherId", "watcher_id"));
  auto it = watchers_.find(id.value_or(""));
  if (it == watchers_.end()) {
    return Fail(Errc::kNotFound, "watcher not found: '" + id.value_or("") + "'");
  }
  DirWatcher& w = *it->second.watcher;
  if (w.error()) return Unexpected(*w.error());
  json events = json::array();
  for (json& e : EventJsons(w.Take(), w.path(), it->second.include_entry, state_.users)) {
    events.push_back(std::move(e));
  }
  json out = json::object();
  out["events"] = std::move(events);
  return out;
}

Result<json> FilesystemService::RemoveWatcher(const CallContext& ctx, const json& req) {
  (void)ctx;
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> id, wire::GetString(req, "watcherId", "watcher_id"));
  auto it = watchers_.find(id.value_or(""));
  if (it == watchers_.end()) {
    return Fail(Errc::kNotFound, "watcher not found: '" + id.value_or("") + "'");
  }
  it->second.watcher->Stop();
  watchers_.erase(it);
  return json::object();
}

}  // namespace kiln::envd
