#include "cli/envelope.h"

namespace kiln::cli {

Result<std::optional<http::connect::Envelope>> EnvelopeDecoder::Next() {
  if (failed_) return Fail(Errc::kInvalidArgument, "malformed Connect stream");
  std::string_view avail = std::string_view(buffer_).substr(offset_);
  if (avail.size() < 5) return std::optional<http::connect::Envelope>();
  uint8_t flags = static_cast<uint8_t>(avail[0]);
  uint32_t len = 0;
  for (int i = 1; i <= 4; ++i) len = (len << 8) | static_cast<uint8_t>(avail[i]);
  if (flags & http::connect::kFlagCompressed) {
    failed_ = true;
    return Fail(Errc::kInvalidArgument, "compressed Connect frame (compression was not asked for)");
  }
  if (len > kMaxFrameBytes) {
    failed_ = true;
    return Fail(Errc::kInvalidArgument,
                "Connect frame of " + std::to_string(len) + " bytes is too large");
  }
  if (avail.size() < 5 + static_cast<size_t>(len)) return std::optional<http::connect::Envelope>();
  http::connect::Envelope env;
  env.flags = flags;
  env.payload = std::string(avail.substr(5, len));
  offset_ += 5 + len;
  // Drop consumed bytes once they dominate the buffer, so memory stays bounded by a frame.
  if (offset_ > 64 * 1024 && offset_ * 2 > buffer_.size()) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  return std::optional<http::connect::Envelope>(std::move(env));
}

}  // namespace kiln::cli
