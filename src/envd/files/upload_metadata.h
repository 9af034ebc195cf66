#pragma once

#include <map>
#include <string>

#include "base/error.h"
#include "http/server.h"

namespace kiln::envd {

// Largest metadata key: xattr names hold 255 bytes, "user.e2b." takes 9.
inline constexpr size_t kMaxMetadataKeyBytes = 246;
// Largest sum of key and value bytes over one file's metadata.
inline constexpr size_t kMaxMetadataBytes = 4096;

// SECURITY: header names and values come from the client. Collects every
// `X-Metadata-<key>: <value>` header as metadata key lower(<key>) (the first value wins when
// a key repeats). kInvalidArgument for an empty key, bytes outside printable ASCII, a key
// over kMaxMetadataKeyBytes or a total over kMaxMetadataBytes.
Result<std::map<std::string, std::string>> MetadataFromHeaders(const http::Fields& headers);

}  // namespace kiln::envd
