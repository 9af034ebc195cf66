#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln::envd {

// Streaming gzip (RFC 1952) compressor over zlib. Not thread-safe.
class GzipEncoder {
 public:
  // `level` as zlib's: 1 (fastest) .. 9 (smallest).
  explicit GzipEncoder(int level = 1);
  ~GzipEncoder();
  GzipEncoder(const GzipEncoder&) = delete;
  GzipEncoder& operator=(const GzipEncoder&) = delete;

  // Compressed bytes for `data` (zlib may hold some back until Finish()).
  Result<std::string> Write(std::string_view data);
  // Everything compressed so far (a sync flush); the stream continues.
  Result<std::string> Flush();
  // The rest of the stream, with the gzip trailer.
  Result<std::string> Finish();

 private:
  struct State;
  Result<std::string> Run(std::string_view data, int flush);
  std::unique_ptr<State> state_;
};

// Streaming gzip decompressor over zlib; concatenated gzip members are one stream (as in
// Go's gzip.Reader and `gunzip`). Memory stays bounded whatever the expansion ratio: the
// output goes to a sink in pieces. Not thread-safe.
class GzipDecoder {
 public:
  using Sink = std::function<Status(std::string_view)>;

  explicit GzipDecoder(Sink sink);
  ~GzipDecoder();
  GzipDecoder(const GzipDecoder&) = delete;
  GzipDecoder& operator=(const GzipDecoder&) = delete;

  // kInvalidArgument for data that is not gzip; sink errors come back unchanged.
  Status Write(std::string_view data);
  // kInvalidArgument when the input stopped inside a member (or there was none).
  Status Finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
  Sink sink_;
};

}  // namespace kiln::envd
