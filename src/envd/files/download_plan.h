#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "http/server.h"

namespace kiln::envd {

// The state of a regular file that decides caching headers and ranges.
struct FileVersion {
  uint64_t size = 0;
  int64_t mtime_sec = 0;
  int64_t mtime_nsec = 0;
};

// How GET /files answers for one file: status, headers and which bytes to send.
struct DownloadPlan {
  // 200, 206 (range), 304 (conditional hit), 406 (no acceptable encoding), 416 (bad range).
  unsigned status = 200;
  // Content-Type, Content-Disposition, ETag, Last-Modified, Accept-Ranges, Vary and, as
  // needed, Content-Range and Content-Encoding. Never Content-Length.
  http::Fields headers;
  uint64_t offset = 0;
  // Bytes of the file to send from `offset`; 0 for 304, 406 and 416.
  uint64_t length = 0;
  // Send the bytes gzip-compressed (length then is the uncompressed count).
  bool gzip = false;
  // The client also accepts the bytes uncompressed (so gzip may be dropped when it does not
  // pay off; Content-Encoding must be removed from `headers` then).
  bool identity_allowed = true;
};

// Applies the request's Range, If-Range, If-None-Match, If-Modified-Since and
// Accept-Encoding headers to `file`, named `path`. Malformed or multi-range Range headers
// are ignored (the whole file is sent), as RFC 9110 allows. Ranges and conditional hits are
// never compressed; neither are empty files nor types that are already compressed.
DownloadPlan PlanDownload(const http::RequestHead& head, std::string_view path,
                          const FileVersion& file);

// The pieces, exposed for tests.

// Content type by file extension (case-insensitive); application/octet-stream otherwise.
std::string_view ContentTypeForPath(std::string_view path);
// Whether the extension names an already-compressed format (zip, gz, png, mp4, ...).
bool IsCompressedFormat(std::string_view path);

// `inline; filename=<name>` like Go's mime.FormatMediaType: a bare token, else a quoted
// string, else RFC 2231 `filename*=utf-8''...` for bytes outside printable ASCII.
std::string InlineContentDisposition(std::string_view name);

// "Sun, 06 Nov 1994 08:49:37 GMT" (IMF-fixdate).
std::string FormatHttpDate(int64_t unix_sec);
// IMF-fixdate only; nullopt otherwise.
std::optional<int64_t> ParseHttpDate(std::string_view text);

struct ByteRange {
  enum class Kind { kWhole, kPartial, kUnsatisfiable };
  Kind kind = Kind::kWhole;
  uint64_t offset = 0;
  uint64_t length = 0;
};
// A single "bytes=a-b" / "a-" / "-n" range against `size`. kWhole for an absent, malformed
// or multi-range header.
ByteRange ParseRange(std::string_view header, uint64_t size);

// Quality values (0..1000) the Accept-Encoding header gives gzip and identity. An absent or
// empty header accepts identity only; identity stays acceptable unless "identity;q=0" or
// "*;q=0" excludes it.
struct EncodingPreference {
  int gzip = 0;
  int identity = 1000;
};
EncodingPreference ParseAcceptEncoding(std::string_view header);

}  // namespace kiln::envd
