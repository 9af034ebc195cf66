#include "envd/files/gzip_codec.h"

#include <zlib.h>

namespace kiln::envd {
namespace {

constexpr size_t kOutChunk = 64 * 1024;
// windowBits for deflateInit2/inflateInit2: 15 bits plus 16 selects the gzip wrapper.
constexpr int kGzipWindowBits = 15 + 16;

std::string ZlibMessage(const z_stream& z, int rc) {
  return z.msg ? z.msg : "zlib error " + std::to_string(rc);
}

}  // namespace

// zlib keeps a pointer to its z_stream, so it lives on the heap and never moves.
struct GzipEncoder::State {
  z_stream z{};
  bool ok = false;
  ~State() {
    if (ok) deflateEnd(&z);
  }
};

GzipEncoder::GzipEncoder(int level) : state_(std::make_unique<State>()) {
  state_->ok = deflateInit2(&state_->z, level, Z_DEFLATED, kGzipWindowBits, 8,
                            Z_DEFAULT_STRATEGY) == Z_OK;
}

GzipEncoder::~GzipEncoder() = default;

Result<std::string> GzipEncoder::Run(std::string_view data, int flush) {
  if (!state_->ok) return Fail(Errc::kInternal, "gzip: compressor not initialized");
  z_stream& z = state_->z;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  std::string out;
  for (;;) {
    size_t used = out.size();
    out.resize(used + kOutChunk);
    z.next_out = reinterpret_cast<Bytef*>(out.data() + used);
    z.avail_out = static_cast<uInt>(kOutChunk);
    int rc = deflate(&z, flush);
    out.resize(used + kOutChunk - z.avail_out);
    if (rc == Z_STREAM_END) break;
    bool stuck = rc == Z_BUF_ERROR && z.avail_out == kOutChunk;
    if ((rc != Z_OK && rc != Z_BUF_ERROR) || (stuck && flush == Z_FINISH)) {
      return Fail(Errc::kInternal, "gzip: " + ZlibMessage(z, rc));
    }
    // Without Z_FINISH: done when zlib took (and flushed) everything and had room to spare.
    if (flush != Z_FINISH && z.avail_in == 0 && z.avail_out != 0) break;
  }
  return out;
}

Result<std::string> GzipEncoder::Write(std::string_view data) {
  if (data.empty()) return std::string();
  return Run(data, Z_NO_FLUSH);
}

Result<std::string> GzipEncoder::Flush() { return Run({}, Z_SYNC_FLUSH); }

Result<std::string> GzipEncoder::Finish() { return Run({}, Z_FINISH); }

struct GzipDecoder::State {
  z_stream z{};
  bool ok = false;
  // Inside a member: started and not yet at its end.
  bool in_member = false;
  bool saw_member = false;
  ~State() {
    if (ok) inflateEnd(&z);
  }
};

GzipDecoder::GzipDecoder(Sink sink) : state_(std::make_unique<State>()), sink_(std::move(sink)) {
  state_->ok = inflateInit2(&state_->z, kGzipWindowBits) == Z_OK;
}

GzipDecoder::~GzipDecoder() = default;

Status GzipDecoder::Write(std::string_view data) {
  if (!state_->ok) return Fail(Errc::kInternal, "gzip: decompressor not initialized");
  z_stream& z = state_->z;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  char out[kOutChunk];
  for (;;) {
    if (z.avail_in > 0 && !state_->in_member) {
      state_->in_member = true;
      state_->saw_member = true;
    }
    z.next_out = reinterpret_cast<Bytef*>(out);
    z.avail_out = sizeof out;
    int rc = inflate(&z, Z_NO_FLUSH);
    size_t produced = sizeof out - z.avail_out;
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      return Fail(Errc::kInvalidArgument, "invalid gzip data: " + ZlibMessage(z, rc));
    }
    if (produced > 0) KILN_TRY(sink_(std::string_view(out, produced)));
    if (rc == Z_STREAM_END) {
      // Another member may follow; inflateReset keeps next_in/avail_in.
      state_->in_member = false;
      if (inflateReset(&z) != Z_OK) return Fail(Errc::kInternal, "gzip: inflateReset failed");
      if (z.avail_in == 0) return Status();
      continue;
    }
    // All input consumed and nothing left pending inside zlib.
    if (z.avail_in == 0 && z.avail_out != 0) return Status();
    if (rc == Z_BUF_ERROR && produced == 0) {
      return Fail(Errc::kInvalidArgument, "invalid gzip data: no progress");
    }
  }
}

Status GzipDecoder::Finish() {
  if (!state_->ok) return Fail(Errc::kInternal, "gzip: decompressor not initialized");
  if (!state_->saw_member) return Fail(Errc::kInvalidArgument, "empty gzip body");
  if (state_->in_member) return Fail(Errc::kInvalidArgument, "truncated gzip body");
  return Status();
}

}  // namespace kiln::envd
