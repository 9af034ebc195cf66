#include "envd/control_routes.h"

#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "base/encoding.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "envd/agent.h"
#include "wire/json_util.h"

namespace kiln::envd {
namespace {

using nlohmann::json;
constexpr size_t kMaxInitBody = 1024 * 1024;

struct CpuSample {
  uint64_t total = 0;
  uint64_t idle = 0;
};

CpuSample ReadCpu() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  CpuSample s;
  in >> cpu;
  uint64_t v;
  for (int i = 0; i < 10 && (in >> v); ++i) {
    s.total += v;
    if (i == 3 || i == 4) s.idle += v;  // idle + iowait
  }
  return s;
}

std::map<std::string, uint64_t> ReadMeminfo() {
  std::ifstream in("/proc/meminfo");
  std::map<std::string, uint64_t> out;
  std::string key, unit;
  uint64_t value;
  while (in >> key >> value) {
    std::getline(in, unit);
    if (!key.empty() && key.back() == ':') key.pop_back();
    out[key] = value * 1024;
  }
  return out;
}

// Mixes host randomness into the kernel's pool, credited in full, and makes the crng reseed
// from it now. Sandboxes restored from one snapshot start with the same RNG state; this is
// what tells them apart. Both ioctls need CAP_SYS_ADMIN in the initial user namespace: in the
// ns runtime (root of a user namespace, the host's kernel RNG) they fail with EPERM, which is
// fine, because there is no shared state to fix.
Status AddEntropy(const std::string& bytes) {
  UniqueFd fd(open("/dev/urandom", O_WRONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open /dev/urandom");
  // struct rand_pool_info ends in a flexible array of u32; build it in u32 storage.
  std::vector<uint32_t> storage(2 + (bytes.size() + 3) / 4);
  auto* info = reinterpret_cast<rand_pool_info*>(storage.data());
  info->entropy_count = static_cast<int>(bytes.size() * 8);
  info->buf_size = static_cast<int>(bytes.size());
  std::memcpy(info->buf, bytes.data(), bytes.size());
  int rc = ioctl(fd.get(), RNDADDENTROPY, info);
  explicit_bzero(storage.data(), storage.size() * sizeof(uint32_t));
  if (rc < 0) return FailErrno("ioctl RNDADDENTROPY");
  if (ioctl(fd.get(), RNDRESEEDCRNG) < 0) return FailErrno("ioctl RNDRESEEDCRNG");
  return {};
}

}  // namespace

std::optional<std::string> DecodeInitEntropy(std::string_view base64) {
  std::optional<std::string> bytes = Base64Decode(base64);
  if (!bytes || bytes->size() < kMinInitEntropy || bytes->size() > kMaxInitEntropy) {
    return std::nullopt;
  }
  return bytes;
}

ControlRoutes::ControlRoutes(boost::asio::io_context& io, AgentState& state)
    : io_(io), state_(state) {
  CpuSample s = ReadCpu();
  last_cpu_total_ = s.total;
  last_cpu_idle_ = s.idle;
}

void ControlRoutes::Register(http::Router& router) {
  router.Add(http::Verb::get, "/health", [](http::Exchange& ex) -> http::Task<void> {
    co_await ex.Respond(http::Response::Empty(204));
  });
  router.Add(http::Verb::get, "/envs", [this](http::Exchange& ex) -> http::Task<void> {
    json env = json::object();
    for (const auto& [k, v] : state_.env_vars) env[k] = v;
    co_await ex.Respond(http::Response::Json(200, env.dump(-1, ' ', false,
                                                           json::error_handler_t::replace)));
  });
  router.Add(http::Verb::get, "/metrics", [this](http::Exchange& ex) -> http::Task<void> {
    co_await ex.Respond(Metrics());
  });
  router.Add(http::Verb::post, "/init", [this](http::Exchange& ex) -> http::Task<void> {
    auto body = co_await ex.ReadBody(kMaxInitBody);
    if (!body) {
      co_await ex.Respond(http::Response::JsonError(413, body.error().message()));
      co_return;
    }
    co_await ex.Respond(Init(ex.request(), *body));
  });
}

http::Response ControlRoutes::Init(const http::RequestHead& head, const std::string& body) {
  // SECURITY: once a token is set, only its holder may reconfigure the agent.
  if (state_.access_token &&
      !ConstantTimeEquals(head.Header("x-access-token"), *state_.access_token)) {
    return UnauthorizedResponse();
  }
  json req = body.empty() ? json::object() : json::parse(body, nullptr, false);
  if (req.is_discarded() || !req.is_object()) {
    return http::Response::JsonError(400, "init body must be a JSON object");
  }
  auto env = wire::GetStringMap(req, "envVars", "env_vars");
  auto token = wire::GetString(req, "accessToken", "access_token");
  auto user = wire::GetString(req, "defaultUser", "default_user");
  auto workdir = wire::GetString(req, "defaultWorkdir", "default_workdir");
  auto timestamp = wire::GetString(req, "timestamp");
  auto entropy_text = wire::GetString(req, "entropy");
  for (const Error* e : {env ? nullptr : &env.error(), token ? nullptr : &token.error(),
                         user ? nullptr : &user.error(), workdir ? nullptr : &workdir.error(),
                         timestamp ? nullptr : &timestamp.error(),
                         entropy_text ? nullptr : &entropy_text.error()}) {
    if (e) return http::Response::JsonError(400, e->message());
  }
  std::optional<std::string> entropy;
  if (*entropy_text) {
    entropy = DecodeInitEntropy(**entropy_text);
    if (!entropy) {
      return http::Response::JsonError(400, "entropy must be base64 of " +
                                                std::to_string(kMinInitEntropy) + ".." +
                                                std::to_string(kMaxInitEntropy) + " bytes");
    }
  }
  if (*user && !user->value().empty()) {
    if (!state_.users.Lookup(**user)) {
      return http::Response::JsonError(400, "default user '" + **user + "' does not exist");
    }
    state_.default_user = **user;
  }
  if (*env) {
    for (const auto& [k, v] : **env) state_.env_vars[k] = v;
  }
  if (*token) {
    if (token->value().empty()) {
      state_.access_token.reset();
    } else {
      state_.access_token = **token;
    }
  }
  if (*workdir) state_.default_workdir = **workdir;
  if (*timestamp) {
    // A restored sandbox wakes with a stale clock; move it forward to the host's time.
    std::optional<int64_t> ns = ParseRfc3339(**timestamp);
    if (!ns) return http::Response::JsonError(400, "timestamp is not RFC 3339");
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ns = now.tv_sec * 1000000000LL + now.tv_nsec;
    if (*ns - now_ns > 1000000000LL) {
      timespec want{static_cast<time_t>(*ns / 1000000000), static_cast<long>(*ns % 1000000000)};
      if (clock_settime(CLOCK_REALTIME, &want) != 0) {
        KILN_LOG(Warn, "cannot set the clock", {"error", strerror(errno)});
      }
    }
  }
  if (entropy) {
    Status st = AddEntropy(*entropy);
    explicit_bzero(entropy->data(), entropy->size());
    if (!st && st.error().code() == Errc::kPermissionDenied) {
      KILN_LOG(Info, "not reseeding the kernel RNG (no CAP_SYS_ADMIN here)",
               {"error", st.error().message()});
    } else if (!st) {
      KILN_LOG(Warn, "cannot reseed the kernel RNG", {"error", st.error().message()});
      return http::Response::JsonError(500, "reseeding the kernel RNG: " + st.error().message());
    }
  }
  http::Response r = http::Response::Empty(204);
  r.headers.set("X-Envd-Version", std::string(kEnvdVersion));
  return r;
}

http::Response ControlRoutes::Metrics() {
  CpuSample s = ReadCpu();
  uint64_t dt = s.total - last_cpu_total_;
  uint64_t di = s.idle - last_cpu_idle_;
  double pct = dt == 0 ? 0.0 : 100.0 * static_cast<double>(dt - di) / static_cast<double>(dt);
  last_cpu_total_ = s.total;
  last_cpu_idle_ = s.idle;
  auto mem = ReadMeminfo();
  uint64_t total = mem["MemTotal"];
  uint64_t avail = mem.count("MemAvailable") ? mem["MemAvailable"] : mem["MemFree"];
  uint64_t cache = mem["Cached"];
  uint64_t used = total > avail ? total - avail : 0;
  struct statvfs fs {};
  uint64_t disk_total = 0, disk_used = 0;
  if (statvfs("/", &fs) == 0) {
    disk_total = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
    disk_used = disk_total - static_cast<uint64_t>(fs.f_bfree) * fs.f_frsize;
  }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  json j = {{"ts", static_cast<int64_t>(time(nullptr))},
            {"cpu_count", cpus},
            {"cpu_used_pct", pct},
            {"mem_total", total},
            {"mem_used", used},
            {"mem_cache", cache},
            {"mem_total_mib", total >> 20},
            {"mem_used_mib", used >> 20},
            {"disk_used", disk_used},
            {"disk_total", disk_total}};
  return http::Response::Json(200, j.dump());
}

}  // namespace kiln::envd
