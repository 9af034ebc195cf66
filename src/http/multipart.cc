#include "http/multipart.h"

#include <algorithm>

namespace kiln::http {
namespace {

// Longest run of whitespace allowed between a boundary and its CRLF (RFC 2046 transport
// padding); longer runs make the line content instead of a delimiter.
constexpr size_t kMaxBoundaryPadding = 256;
constexpr size_t kMaxBoundaryLength = 200;

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

bool IsTSpecial(char c) {
  return std::string_view("()<>@,;:\\\"/[]?=").find(c) != std::string_view::npos;
}

bool IsTokenChar(char c) {
  auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u < 0x7f && !IsTSpecial(c);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  });
  return out;
}

// Reads a quoted-string starting at s[i] == '"'; advances i past the closing quote.
std::optional<std::string> ReadQuoted(std::string_view s, size_t& i) {
  std::string out;
  for (++i; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') {
      ++i;
      return out;
    }
    if (c == '\\' && i + 1 < s.size() && IsTSpecial(s[i + 1])) c = s[++i];
    out += c;
  }
  return std::nullopt;
}

std::unexpected<Error> Malformed(std::string_view what) {
  return Fail(Errc::kInvalidArgument, "malformed multipart body: " + std::string(what));
}

}  // namespace

std::optional<MediaType> ParseMediaType(std::string_view value) {
  size_t semi = value.find(';');
  MediaType mt;
  mt.type = Lower(Trim(value.substr(0, semi)));
  if (mt.type.empty()) return std::nullopt;
  for (char c : mt.type) {
    if (!IsTokenChar(c) && c != '/') return std::nullopt;
  }
  size_t i = semi == std::string_view::npos ? value.size() : semi + 1;
  while (i < value.size()) {
    while (i < value.size() && (IsSpace(value[i]) || value[i] == ';')) ++i;
    if (i >= value.size()) break;
    size_t eq = value.find('=', i);
    if (eq == std::string_view::npos) return std::nullopt;
    std::string name = Lower(Trim(value.substr(i, eq - i)));
    if (name.empty() || !std::all_of(name.begin(), name.end(), IsTokenChar)) return std::nullopt;
    i = eq + 1;
    while (i < value.size() && IsSpace(value[i])) ++i;
    std::string param;
    if (i < value.size() && value[i] == '"') {
      std::optional<std::string> quoted = ReadQuoted(value, i);
      if (!quoted) return std::nullopt;
      param = std::move(*quoted);
      while (i < value.size() && IsSpace(value[i])) ++i;
      if (i < value.size() && value[i] != ';') return std::nullopt;
    } else {
      size_t end = value.find(';', i);
      if (end == std::string_view::npos) end = value.size();
      param = std::string(Trim(value.substr(i, end - i)));
      if (param.find('"') != std::string::npos) return std::nullopt;
      i = end;
    }
    mt.params[std::move(name)] = std::move(param);
  }
  return mt;
}

Result<std::string> MultipartBoundary(std::string_view content_type) {
  std::optional<MediaType> mt = ParseMediaType(content_type);
  if (!mt || !mt->type.starts_with("multipart/")) {
    return Fail(Errc::kInvalidArgument, "not a multipart content type");
  }
  auto it = mt->params.find("boundary");
  if (it == mt->params.end() || it->second.empty()) {
    return Fail(Errc::kInvalidArgument, "multipart content type without a boundary");
  }
  const std::string& b = it->second;
  if (b.size() > kMaxBoundaryLength || b.find_first_of("\r\n") != std::string::npos) {
    return Fail(Errc::kInvalidArgument, "invalid multipart boundary");
  }
  return b;
}

std::string_view MultipartPart::Header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return {};
}

MultipartParser::MultipartParser(std::string boundary, MultipartSink& sink)
    : delimiter_("\r\n--" + boundary), sink_(sink) {}

Status MultipartParser::Failed(Error error) {
  state_ = State::kFailed;
  buf_.clear();
  error_ = error;
  return Unexpected(std::move(error));
}

Status MultipartParser::Feed(std::string_view data) {
  if (state_ == State::kFailed) return Unexpected(*error_);
  if (state_ == State::kDone) return Status();
  buf_.append(data);
  for (;;) {
    Result<bool> progressed = Advance();
    if (!progressed) return Failed(std::move(progressed).error());
    if (!*progressed) return Status();
  }
}

Status MultipartParser::Finish() {
  if (state_ == State::kFailed) return Unexpected(*error_);
  if (state_ == State::kDone) return Status();
  return Failed(Malformed("body ended before the closing boundary").error());
}

Result<bool> MultipartParser::Advance() {
  switch (state_) {
    case State::kPreamble:
    case State::kBody:
      return ScanForDelimiter();
    case State::kHeaders:
      return ParseHeaders();
    case State::kDone:
      buf_.clear();  // the epilogue
      return false;
    case State::kFailed:
      return false;
  }
  return false;
}

MultipartParser::Tail MultipartParser::ClassifyTail(size_t at) const {
  size_t i = at + delimiter_.size();
  if (i >= buf_.size()) return {TailKind::kNeedMore};
  if (buf_[i] == '-') {
    if (i + 1 >= buf_.size()) return {TailKind::kNeedMore};
    if (buf_[i + 1] == '-') return {TailKind::kClose, delimiter_.size() + 2};
    return {TailKind::kNotDelimiter};
  }
  size_t j = i;
  while (j < buf_.size() && IsSpace(buf_[j]) && j - i <= kMaxBoundaryPadding) ++j;
  if (j - i > kMaxBoundaryPadding) return {TailKind::kNotDelimiter};
  if (j + 1 >= buf_.size()) {
    return {j < buf_.size() && buf_[j] != '\r' ? TailKind::kNotDelimiter : TailKind::kNeedMore};
  }
  if (buf_[j] != '\r' || buf_[j + 1] != '\n') return {TailKind::kNotDelimiter};
  return {TailKind::kNextPart, j - at};
}

Result<bool> MultipartParser::ScanForDelimiter() {
  bool in_body = state_ == State::kBody;
  // Hands buf_[0, n) to the sink (preamble bytes are dropped) and removes it.
  auto consume = [&](size_t n) -> Status {
    if (in_body && n > 0) KILN_TRY(sink_.OnPartData(std::string_view(buf_).substr(0, n)));
    buf_.erase(0, n);
    return Status();
  };
  size_t from = 0;
  for (;;) {
    size_t at = buf_.find(delimiter_, from);
    if (at == std::string::npos) {
      // Keep what could be the start of a delimiter split across reads.
      size_t keep = std::min(buf_.size(), delimiter_.size() - 1);
      KILN_TRY(consume(buf_.size() - keep));
      return false;
    }
    Tail tail = ClassifyTail(at);
    if (tail.kind == TailKind::kNotDelimiter) {
      from = at + 1;
      continue;
    }
    KILN_TRY(consume(at));
    if (tail.kind == TailKind::kNeedMore) return false;
    if (in_body) KILN_TRY(sink_.OnPartEnd());
    // For the next part buf_ keeps the CRLF that ends the delimiter line, so an empty
    // header block is "\r\n\r\n" like any other.
    buf_.erase(0, tail.length);
    state_ = tail.kind == TailKind::kClose ? State::kDone : State::kHeaders;
    return true;
  }
}

Result<bool> MultipartParser::ParseHeaders() {
  size_t end = buf_.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (buf_.size() > kMaxPartHeaderBytes) return Malformed("part headers too large");
    return false;
  }
  if (end > kMaxPartHeaderBytes) return Malformed("part headers too large");
  MultipartPart part;
  // buf_ is "\r\n" + header lines + "\r\n\r\n" (just "\r\n\r\n" without headers).
  std::string_view block =
      end == 0 ? std::string_view() : std::string_view(buf_).substr(2, end - 2);
  while (!block.empty()) {
    size_t eol = block.find("\r\n");
    std::string_view line = block.substr(0, eol);
    block = eol == std::string_view::npos ? std::string_view() : block.substr(eol + 2);
    if (line.empty()) continue;
    if (IsSpace(line.front())) {  // obsolete line folding
      if (part.headers.empty()) return Malformed("continuation line without a header");
      part.headers.back().second += ' ';
      part.headers.back().second += Trim(line);
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return Malformed("part header without ':'");
    std::string name = Lower(Trim(line.substr(0, colon)));
    if (name.empty() || !std::all_of(name.begin(), name.end(), IsTokenChar)) {
      return Malformed("invalid part header name");
    }
    part.headers.emplace_back(std::move(name), std::string(Trim(line.substr(colon + 1))));
  }
  if (std::string_view cd = part.Header("content-disposition"); !cd.empty()) {
    std::optional<MediaType> disposition = ParseMediaType(cd);
    if (!disposition) return Malformed("invalid Content-Disposition");
    part.name = disposition->params["name"];
    if (auto it = disposition->params.find("filename"); it != disposition->params.end()) {
      part.filename = it->second;
    }
  }
  buf_.erase(0, end + 4);
  state_ = State::kBody;
  KILN_TRY(sink_.OnPartBegin(part));
  return true;
}

}  // namespace kiln::http
