#include "envd/filesystem/entry_info.h"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <climits>
#include <cstdlib>
#include <memory>

#include "base/encoding.h"
#include "envd/agent_state.h"
#include "sys/file_metadata.h"

namespace kiln::envd {
namespace {

FileType TypeOfMode(mode_t m) {
  if (S_ISREG(m)) return FileType::kFile;
  if (S_ISDIR(m)) return FileType::kDirectory;
  if (S_ISLNK(m)) return FileType::kSymlink;
  return FileType::kUnspecified;
}

std::string Basename(const std::string& path) {
  if (path == "/") return path;
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string Dirname(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

// Where a symlink finally points: realpath() when it resolves, else its own target made
// absolute against the link's directory (a dangling link still shows where it points).
std::string SymlinkTarget(const std::string& path) {
  std::unique_ptr<char, decltype(&free)> real(realpath(path.c_str(), nullptr), &free);
  if (real) return real.get();
  std::array<char, PATH_MAX> buf;
  ssize_t n = readlink(path.c_str(), buf.data(), buf.size() - 1);
  if (n < 0) return path;
  std::string target(buf.data(), static_cast<size_t>(n));
  if (!target.starts_with('/')) target = Dirname(path) + "/" + target;
  return NormalizePath(target);
}

}  // namespace

std::string_view FileTypeName(FileType type) {
  switch (type) {
    case FileType::kFile: return "FILE_TYPE_FILE";
    case FileType::kDirectory: return "FILE_TYPE_DIRECTORY";
    case FileType::kSymlink: return "FILE_TYPE_SYMLINK";
    case FileType::kUnspecified: break;
  }
  return "FILE_TYPE_UNSPECIFIED";
}

std::string FormatPermissions(mode_t m) {
  // Go's FileMode flag order, most significant bit first: "dalTLDpSugct?". Linux stat can set
  // d, L, D, p, S, u, g, c and t.
  std::string out;
  if (S_ISDIR(m)) out += 'd';
  if (S_ISLNK(m)) out += 'L';
  if (S_ISBLK(m) || S_ISCHR(m)) out += 'D';
  if (S_ISFIFO(m)) out += 'p';
  if (S_ISSOCK(m)) out += 'S';
  if (m & S_ISUID) out += 'u';
  if (m & S_ISGID) out += 'g';
  if (S_ISCHR(m)) out += 'c';
  if (m & S_ISVTX) out += 't';
  if (out.empty()) out += '-';
  static constexpr std::string_view kRwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) {
    out += (m & (1u << (8 - i))) ? kRwx[i] : '-';
  }
  return out;
}

const std::string& OwnerNames::User(uid_t uid) {
  auto it = users_cache_.find(uid);
  if (it == users_cache_.end()) it = users_cache_.emplace(uid, users_.UserName(uid)).first;
  return it->second;
}

const std::string& OwnerNames::Group(gid_t gid) {
  auto it = groups_cache_.find(gid);
  if (it == groups_cache_.end()) it = groups_cache_.emplace(gid, users_.GroupName(gid)).first;
  return it->second;
}

Result<EntryInfo> ReadEntryInfo(const std::string& path, OwnerNames& names) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return Fail(Errc::kNotFound, "no such file or directory: " + path);
    }
    return FailErrno("lstat " + path, err);
  }
  EntryInfo e;
  e.name = Basename(path);
  e.path = path;
  e.size = static_cast<int64_t>(st.st_size);
  e.permissions = FormatPermissions(st.st_mode);
  e.owner = names.User(st.st_uid);
  e.group = names.Group(st.st_gid);
  e.mtime_sec = static_cast<int64_t>(st.st_mtim.tv_sec);
  e.mtime_nsec = static_cast<int64_t>(st.st_mtim.tv_nsec);
  e.type = TypeOfMode(st.st_mode);
  e.mode = st.st_mode & 0777;
  if (S_ISLNK(st.st_mode)) {
    e.symlink_target = SymlinkTarget(path);
    // Like envd: a link reports what it points to. A dangling one stays a symlink.
    struct stat target;
    if (stat(path.c_str(), &target) == 0) {
      e.type = TypeOfMode(target.st_mode);
      e.mode = target.st_mode & 0777;
    }
  }
  auto metadata = sys::ReadMetadata(path);
  if (metadata) e.metadata = std::move(*metadata);
  return e;
}

nlohmann::json EntryInfoToJson(const EntryInfo& e) {
  nlohmann::json j = nlohmann::json::object();
  j["name"] = e.name;
  if (e.type != FileType::kUnspecified) j["type"] = FileTypeName(e.type);
  j["path"] = e.path;
  j["size"] = std::to_string(e.size);
  j["mode"] = e.mode;
  j["permissions"] = e.permissions;
  j["owner"] = e.owner;
  j["group"] = e.group;
  j["modifiedTime"] = FormatRfc3339(e.mtime_sec, e.mtime_nsec);
  if (e.symlink_target) j["symlinkTarget"] = *e.symlink_target;
  if (!e.metadata.empty()) j["metadata"] = e.metadata;
  return j;
}

}  // namespace kiln::envd
