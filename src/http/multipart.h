#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"

namespace kiln::http {

// A media type or disposition ("multipart/form-data; boundary=x", "form-data; name=file")
// split into its lower-cased type and its parameters (names lower-cased, quoted values
// unquoted; inside quotes a backslash escapes only tspecials, as Go's mime package does).
struct MediaType {
  std::string type;
  std::map<std::string, std::string> params;
};

// nullopt when `value` is malformed (no type, unterminated quote, parameter without '=').
std::optional<MediaType> ParseMediaType(std::string_view value);

// The boundary of a multipart Content-Type header. kInvalidArgument when the type is not
// multipart/*, or the boundary is missing, empty, longer than 200 bytes or holds CR/LF.
Result<std::string> MultipartBoundary(std::string_view content_type);

// The headers of one part of a multipart body.
struct MultipartPart {
  // Header names lower-cased, values trimmed, in order.
  std::vector<std::pair<std::string, std::string>> headers;
  // From Content-Disposition; empty / nullopt when absent.
  std::string name;
  std::optional<std::string> filename;

  // First value of header `lower_name`, empty when absent.
  std::string_view Header(std::string_view lower_name) const;
};

// Receives the parts of a multipart body as the parser finds them. A failed Status stops
// the parser and is returned from MultipartParser::Feed unchanged.
class MultipartSink {
 public:
  virtual ~MultipartSink() = default;
  virtual Status OnPartBegin(const MultipartPart& part) = 0;
  // The part's content, in pieces of any size (possibly empty).
  virtual Status OnPartData(std::string_view data) = 0;
  virtual Status OnPartEnd() = 0;
};

// Incremental RFC 2046 multipart parser: bytes go in as they arrive (split anywhere), part
// headers and content come out through the sink. Memory stays bounded by the boundary
// length and kMaxPartHeaderBytes whatever the body size; preamble and epilogue are dropped.
// Delimiter lines need CRLF; "--boundary" followed by anything other than "--", optional
// whitespace and CRLF is content, as in Go's mime/multipart.
// Not thread-safe. The sink must outlive the parser.
class MultipartParser {
 public:
  static constexpr size_t kMaxPartHeaderBytes = 16 * 1024;

  MultipartParser(std::string boundary, MultipartSink& sink);

  // kInvalidArgument on malformed input, or the sink's error. After an error every later
  // call fails again.
  Status Feed(std::string_view data);
  // The input ended: kInvalidArgument unless the closing boundary was seen.
  Status Finish();
  // True once the closing boundary was parsed.
  bool done() const { return state_ == State::kDone; }

 private:
  enum class State { kPreamble, kHeaders, kBody, kDone, kFailed };
  enum class TailKind { kNeedMore, kNotDelimiter, kNextPart, kClose };
  struct Tail {
    TailKind kind;
    size_t length = 0;  // bytes of the delimiter line from the match, without its CRLF
  };

  // One step of the state machine; false when it needs more input.
  Result<bool> Advance();
  Result<bool> ScanForDelimiter();
  Result<bool> ParseHeaders();
  // Classifies what follows a "\r\n--boundary" match at buf_[at].
  Tail ClassifyTail(size_t at) const;
  Status Failed(Error error);

  std::string delimiter_;  // "\r\n--" + boundary
  MultipartSink& sink_;
  State state_ = State::kPreamble;
  // Unconsumed input. Starts as "\r\n" so a boundary on the very first line matches.
  std::string buf_ = "\r\n";
  std::optional<Error> error_;
};

}  // namespace kiln::http
