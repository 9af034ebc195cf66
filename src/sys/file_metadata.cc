#include "sys/file_metadata.h"

#include <sys/xattr.h>

#include <vector>

namespace kiln::sys {
namespace {

bool Unsupported(int err) { return err == ENOTSUP || err == EOPNOTSUPP; }

Result<std::vector<std::string>> MetadataNames(const std::string& path) {
  std::vector<std::string> names;
  ssize_t size = listxattr(path.c_str(), nullptr, 0);
  if (size < 0) {
    if (Unsupported(errno)) return names;
    return FailErrno("listxattr " + path);
  }
  std::string buf(static_cast<size_t>(size), '\0');
  size = listxattr(path.c_str(), buf.data(), buf.size());
  if (size < 0) return FailErrno("listxattr " + path);
  buf.resize(static_cast<size_t>(size));
  for (size_t i = 0; i < buf.size();) {
    std::string name(buf.c_str() + i);
    i += name.size() + 1;
    if (name.starts_with(kMetadataXattrPrefix)) names.push_back(std::move(name));
  }
  return names;
}

}  // namespace

Result<std::map<std::string, std::string>> ReadMetadata(const std::string& path) {
  std::map<std::string, std::string> out;
  KILN_ASSIGN_OR_RETURN(std::vector<std::string> names, MetadataNames(path));
  for (const std::string& name : names) {
    ssize_t size = getxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (size < 0) continue;  // removed meanwhile
    std::string value(static_cast<size_t>(size), '\0');
    size = getxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (size < 0) continue;
    value.resize(static_cast<size_t>(size));
    out[name.substr(kMetadataXattrPrefix.size())] = std::move(value);
  }
  return out;
}

Status WriteMetadata(const std::string& path, const std::map<std::string, std::string>& metadata) {
  KILN_ASSIGN_OR_RETURN(std::vector<std::string> names, MetadataNames(path));
  for (const std::string& name : names) {
    if (removexattr(path.c_str(), name.c_str()) != 0 && errno != ENODATA) {
      return FailErrno("removexattr " + path);
    }
  }
  for (const auto& [key, value] : metadata) {
    std::string name = std::string(kMetadataXattrPrefix) + key;
    if (setxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
      if (Unsupported(errno)) {
        return Fail(Errc::kInvalidArgument, "file system of " + path + " has no xattr support");
      }
      return FailErrno("setxattr " + path);
    }
  }
  return Status();
}

}  // namespace kiln::sys
