#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "http/server.h"

namespace kiln::envd {

// What a /files URL signature grants.
enum class FileOp { kRead, kWrite };

std::string_view FileOpName(FileOp op);

// E2B's file URL signature: "v1_" + unpadded standard base64 of
// SHA-256("<path>:<op>:<username>:<token>[:<expiration>]"). `expiration` is the decimal
// unix time exactly as it appears in the URL.
std::string FileUrlSignature(std::string_view path, FileOp op, std::string_view username,
                             std::string_view token,
                             std::optional<std::string_view> expiration = std::nullopt);

// SECURITY: decides whether a GET/POST /files request may act, as envd does. With no
// `token` configured everything passes. Otherwise a non-empty X-Access-Token header must
// equal it; without the header the `signature` query parameter must match the request's
// path, username and `signature_expiration`, which must not lie before `now_unix`.
// kUnauthenticated with envd's messages ("missing signature query parameter", "invalid
// signature", "signature is already expired"); kInvalidArgument for a non-numeric
// signature_expiration.
Status CheckFilesAccess(const http::RequestHead& head, const std::optional<std::string>& token,
                        FileOp op, int64_t now_unix);

}  // namespace kiln::envd
