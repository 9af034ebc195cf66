#pragma once

// Incremental decoder of Connect stream envelopes (1 byte flags, 4-byte big-endian length,
// payload) for the client side of server-streaming calls: bytes go in as they arrive, split
// anywhere, and whole frames come out.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "http/connect.h"

namespace kiln::cli {

class EnvelopeDecoder {
 public:
  // Frames larger than this are refused (envd sends at most 32 KiB of output per frame).
  static constexpr size_t kMaxFrameBytes = 16 << 20;

  void Feed(std::string_view bytes) { buffer_.append(bytes); }

  // The next complete frame, nullopt when more bytes are needed. kInvalidArgument for a
  // compressed frame (never requested) or one above kMaxFrameBytes; the decoder stays failed.
  Result<std::optional<http::connect::Envelope>> Next();

  // Bytes received but not yet returned as a frame.
  size_t buffered() const { return buffer_.size() - offset_; }

 private:
  std::string buffer_;
  size_t offset_ = 0;
  bool failed_ = false;
};

}  // namespace kiln::cli
