#pragma once

#include <map>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln::sys {

// E2B file metadata lives in extended attributes named "user.e2b.<key>".
inline constexpr std::string_view kMetadataXattrPrefix = "user.e2b.";

// Reads every user.e2b.* attribute of `path` (following symlinks), keyed without the prefix.
// A file system without xattr support yields an empty map.
Result<std::map<std::string, std::string>> ReadMetadata(const std::string& path);
// Replaces the user.e2b.* set of `path` with `metadata` (an empty map clears it).
Status WriteMetadata(const std::string& path, const std::map<std::string, std::string>& metadata);

}  // namespace kiln::sys
