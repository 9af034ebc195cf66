#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "sys/users.h"

namespace kiln::envd {

// filesystem.FileType.
enum class FileType { kUnspecified = 0, kFile = 1, kDirectory = 2, kSymlink = 3 };

std::string_view FileTypeName(FileType type);

// What the filesystem service reports about one path (filesystem.EntryInfo).
struct EntryInfo {
  std::string name;  // last path component
  // For a symlink, the type of what it points to; kSymlink only when it dangles.
  FileType type = FileType::kUnspecified;
  std::string path;  // absolute
  int64_t size = 0;  // of the entry itself (a symlink's own size)
  uint32_t mode = 0;  // permission bits (of the target for a symlink)
  std::string permissions;  // ls-style, of the entry itself: "-rw-r--r--", "Lrwxrwxrwx"
  std::string owner;
  std::string group;
  int64_t mtime_sec = 0;
  int64_t mtime_nsec = 0;
  std::optional<std::string> symlink_target;  // absolute, symlinks resolved
  std::map<std::string, std::string> metadata;  // user.e2b.* xattrs
};

// Go's os.FileMode.String() of a stat st_mode: type and flag letters from "dalTLDpSugct?"
// (or "-" when none) followed by rwxrwxrwx.
std::string FormatPermissions(mode_t st_mode);

// Resolves uids and gids to names once per request (UserDb reads /etc/passwd on each call).
// Not thread-safe.
class OwnerNames {
 public:
  explicit OwnerNames(const sys::UserDb& users) : users_(users) {}
  const std::string& User(uid_t uid);
  const std::string& Group(gid_t gid);

 private:
  const sys::UserDb& users_;
  std::map<uid_t, std::string> users_cache_;
  std::map<gid_t, std::string> groups_cache_;
};

// lstat()s `path` (absolute) and fills an EntryInfo; `path` is reported as given.
// kNotFound when it does not exist.
Result<EntryInfo> ReadEntryInfo(const std::string& path, OwnerNames& names);

// proto3 JSON of an EntryInfo; size as a decimal string, metadata omitted when empty.
nlohmann::json EntryInfoToJson(const EntryInfo& entry);

}  // namespace kiln::envd
