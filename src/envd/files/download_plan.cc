#include "envd/files/download_plan.h"

#include <time.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <utility>

namespace kiln::envd {
namespace {

namespace bhttp = boost::beast::http;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

std::string Extension(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return std::string();
  return Lower(name.substr(dot));
}

struct TypeEntry {
  std::string_view ext;
  std::string_view type;
  bool compressed;
};

// Go's built-in table (mime.TypeByExtension) plus common text, archive and media types.
constexpr std::array kTypes = {
    TypeEntry{".avif", "image/avif", true},
    TypeEntry{".bz2", "application/x-bzip2", true},
    TypeEntry{".css", "text/css; charset=utf-8", false},
    TypeEntry{".csv", "text/csv; charset=utf-8", false},
    TypeEntry{".gif", "image/gif", true},
    TypeEntry{".gz", "application/gzip", true},
    TypeEntry{".htm", "text/html; charset=utf-8", false},
    TypeEntry{".html", "text/html; charset=utf-8", false},
    TypeEntry{".ico", "image/vnd.microsoft.icon", false},
    TypeEntry{".jpeg", "image/jpeg", true},
    TypeEntry{".jpg", "image/jpeg", true},
    TypeEntry{".js", "text/javascript; charset=utf-8", false},
    TypeEntry{".json", "application/json", false},
    TypeEntry{".md", "text/markdown; charset=utf-8", false},
    TypeEntry{".mjs", "text/javascript; charset=utf-8", false},
    TypeEntry{".mp3", "audio/mpeg", true},
    TypeEntry{".mp4", "video/mp4", true},
    TypeEntry{".ogg", "audio/ogg", true},
    TypeEntry{".pdf", "application/pdf", false},
    TypeEntry{".png", "image/png", true},
    TypeEntry{".svg", "image/svg+xml", false},
    TypeEntry{".tar", "application/x-tar", false},
    TypeEntry{".tgz", "application/gzip", true},
    TypeEntry{".txt", "text/plain; charset=utf-8", false},
    TypeEntry{".wasm", "application/wasm", false},
    TypeEntry{".webm", "video/webm", true},
    TypeEntry{".webp", "image/webp", true},
    TypeEntry{".xml", "text/xml; charset=utf-8", false},
    TypeEntry{".xz", "application/x-xz", true},
    TypeEntry{".zip", "application/zip", true},
    TypeEntry{".zst", "application/zstd", true},
};

const TypeEntry* FindType(std::string_view path) {
  std::string ext = Extension(path);
  for (const TypeEntry& e : kTypes) {
    if (e.ext == ext) return &e;
  }
  return nullptr;
}

bool IsTokenChar(unsigned char c) {
  constexpr std::string_view kSpecials = "()<>@,;:\\\"/[]?=";
  return c > 0x20 && c < 0x7f && kSpecials.find(static_cast<char>(c)) == std::string_view::npos;
}

std::optional<uint64_t> ParseDigits(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// A qvalue ("0", "0.5", "1", "1.000") in thousandths; nullopt when malformed.
std::optional<int> ParseQuality(std::string_view s) {
  if (s.empty() || (s[0] != '0' && s[0] != '1')) return std::nullopt;
  int whole = s[0] - '0';
  int frac = 0;
  if (s.size() > 1) {
    if (s[1] != '.' || s.size() > 5) return std::nullopt;
    int scale = 100;
    for (char c : s.substr(2)) {
      if (c < '0' || c > '9') return std::nullopt;
      frac += (c - '0') * scale;
      scale /= 10;
    }
  }
  int q = whole * 1000 + frac;
  return q > 1000 ? std::nullopt : std::optional<int>(q);
}

std::string ETagFor(const FileVersion& f) {
  char buf[64];
  uint64_t ns = static_cast<uint64_t>(f.mtime_sec) * 1000000000ull +
                static_cast<uint64_t>(f.mtime_nsec);
  std::snprintf(buf, sizeof buf, "\"%llx-%llx\"", static_cast<unsigned long long>(f.size),
                static_cast<unsigned long long>(ns));
  return buf;
}

// If-None-Match uses the weak comparison: W/ prefixes are ignored.
bool ETagListMatches(std::string_view list, std::string_view etag) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = Trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (item == "*") return true;
    if (item.starts_with("W/")) item.remove_prefix(2);
    if (item == etag) return true;
  }
  return false;
}

bool NotModified(const http::RequestHead& head, const FileVersion& file, std::string_view etag) {
  std::string_view inm = head.Header(bhttp::field::if_none_match);
  if (!inm.empty()) return ETagListMatches(inm, etag);
  std::optional<int64_t> since = ParseHttpDate(Trim(head.Header(bhttp::field::if_modified_since)));
  return since && file.mtime_sec <= *since;
}

// If-Range: the Range applies only while the validator still matches (strongly).
bool RangeStillValid(const http::RequestHead& head, const FileVersion& file,
                     std::string_view etag) {
  std::string_view if_range = Trim(head.Header(bhttp::field::if_range));
  if (if_range.empty()) return true;
  if (if_range.starts_with("\"") || if_range.starts_with("W/")) return if_range == etag;
  std::optional<int64_t> date = ParseHttpDate(if_range);
  return date && *date == file.mtime_sec;
}

std::string ContentRange(uint64_t offset, uint64_t length, uint64_t size) {
  return "bytes " + std::to_string(offset) + "-" + std::to_string(offset + length - 1) + "/" +
         std::to_string(size);
}

}  // namespace

std::string_view ContentTypeForPath(std::string_view path) {
  const TypeEntry* e = FindType(path);
  return e ? e->type : "application/octet-stream";
}

bool IsCompressedFormat(std::string_view path) {
  const TypeEntry* e = FindType(path);
  return e && e->compressed;
}

std::string InlineContentDisposition(std::string_view name) {
  if (name.empty()) return "inline";
  bool token = true;
  bool printable = true;
  for (unsigned char c : name) {
    token = token && IsTokenChar(c);
    printable = printable && c >= 0x20 && c < 0x7f;
  }
  if (token) return "inline; filename=" + std::string(name);
  if (printable) {
    std::string out = "inline; filename=\"";
    for (char c : name) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out + "\"";
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out = "inline; filename*=utf-8''";
  for (unsigned char c : name) {
    if (IsTokenChar(c) && c != '*' && c != '\'' && c != '%') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string FormatHttpDate(int64_t unix_sec) {
  time_t t = static_cast<time_t>(unix_sec);
  tm parts{};
  gmtime_r(&t, &parts);
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[parts.tm_wday],
                parts.tm_mday, kMonths[parts.tm_mon], parts.tm_year + 1900, parts.tm_hour,
                parts.tm_min, parts.tm_sec);
  return buf;
}

std::optional<int64_t> ParseHttpDate(std::string_view text) {
  static constexpr std::string_view kMonths = "JanFebMarAprMayJunJulAugSepOctNovDec";
  // "Sun, 06 Nov 1994 08:49:37 GMT"
  if (text.size() != 29 || text.substr(3, 2) != ", " || text.substr(25) != " GMT") {
    return std::nullopt;
  }
  auto num = [&](size_t at, size_t n) { return ParseDigits(text.substr(at, n)); };
  auto day = num(5, 2), year = num(12, 4), hour = num(17, 2), min = num(20, 2), sec = num(23, 2);
  size_t month = kMonths.find(text.substr(8, 3));
  if (!day || !year || !hour || !min || !sec || month == std::string_view::npos ||
      month % 3 != 0 || text[7] != ' ' || text[11] != ' ' || text[16] != ' ' ||
      text[19] != ':' || text[22] != ':') {
    return std::nullopt;
  }
  tm parts{};
  parts.tm_mday = static_cast<int>(*day);
  parts.tm_mon = static_cast<int>(month / 3);
  parts.tm_year = static_cast<int>(*year) - 1900;
  parts.tm_hour = static_cast<int>(*hour);
  parts.tm_min = static_cast<int>(*min);
  parts.tm_sec = static_cast<int>(*sec);
  if (parts.tm_mday < 1 || parts.tm_mday > 31 || parts.tm_hour > 23 || parts.tm_min > 59 ||
      parts.tm_sec > 60) {
    return std::nullopt;
  }
  return static_cast<int64_t>(timegm(&parts));
}

ByteRange ParseRange(std::string_view header, uint64_t size) {
  header = Trim(header);
  if (header.size() < 6 || Lower(header.substr(0, 6)) != "bytes=") return {};
  std::string_view spec = Trim(header.substr(6));
  size_t dash = spec.find('-');
  if (spec.find(',') != std::string_view::npos || dash == std::string_view::npos) return {};
  std::string_view first_text = Trim(spec.substr(0, dash));
  std::string_view last_text = Trim(spec.substr(dash + 1));
  if (first_text.empty()) {  // "-n": the last n bytes
    std::optional<uint64_t> n = ParseDigits(last_text);
    if (!n) return {};
    if (*n == 0 || size == 0) return {ByteRange::Kind::kUnsatisfiable};
    uint64_t len = std::min(*n, size);
    return {ByteRange::Kind::kPartial, size - len, len};
  }
  std::optional<uint64_t> first = ParseDigits(first_text);
  std::optional<uint64_t> last = last_text.empty() ? std::optional<uint64_t>(UINT64_MAX)
                                                   : ParseDigits(last_text);
  if (!first || !last || *last < *first) return {};
  if (*first >= size) return {ByteRange::Kind::kUnsatisfiable};
  uint64_t end = std::min(*last, size - 1);
  return {ByteRange::Kind::kPartial, *first, end - *first + 1};
}

EncodingPreference ParseAcceptEncoding(std::string_view header) {
  EncodingPreference pref;
  std::optional<int> gzip, identity, star;
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    size_t semi = item.find(';');
    std::string coding = Lower(Trim(item.substr(0, semi)));
    if (coding.empty()) continue;
    int q = 1000;
    if (semi != std::string_view::npos) {
      std::string_view param = Trim(item.substr(semi + 1));
      if (param.size() < 2 || Lower(param.substr(0, 2)) != "q=") continue;
      std::optional<int> parsed = ParseQuality(Trim(param.substr(2)));
      if (!parsed) continue;
      q = *parsed;
    }
    if (coding == "gzip" || coding == "x-gzip") gzip = q;
    if (coding == "identity") identity = q;
    if (coding == "*") star = q;
  }
  pref.gzip = gzip ? *gzip : star.value_or(0);
  pref.identity = identity ? *identity : star.value_or(1000);
  return pref;
}

DownloadPlan PlanDownload(const http::RequestHead& head, std::string_view path,
                          const FileVersion& file) {
  DownloadPlan plan;
  std::string etag = ETagFor(file);
  size_t slash = path.rfind('/');
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  plan.headers.set(bhttp::field::content_type, ContentTypeForPath(path));
  plan.headers.set(bhttp::field::content_disposition, InlineContentDisposition(name));
  plan.headers.set(bhttp::field::accept_ranges, "bytes");
  plan.headers.set(bhttp::field::last_modified, FormatHttpDate(file.mtime_sec));
  plan.headers.set(bhttp::field::etag, etag);
  plan.headers.set(bhttp::field::vary, "Accept-Encoding");
  if (NotModified(head, file, etag)) {
    plan.status = 304;
    return plan;
  }
  EncodingPreference enc = ParseAcceptEncoding(head.Header(bhttp::field::accept_encoding));
  ByteRange range;
  std::string_view range_header = head.Header(bhttp::field::range);
  if (!range_header.empty() && enc.identity > 0 && RangeStillValid(head, file, etag)) {
    range = ParseRange(range_header, file.size);
  }
  if (range.kind == ByteRange::Kind::kUnsatisfiable) {
    plan.status = 416;
    plan.headers.set(bhttp::field::content_range, "bytes */" + std::to_string(file.size));
    return plan;
  }
  if (range.kind == ByteRange::Kind::kPartial) {
    plan.status = 206;
    plan.offset = range.offset;
    plan.length = range.length;
    plan.headers.set(bhttp::field::content_range,
                     ContentRange(range.offset, range.length, file.size));
    return plan;
  }
  if (enc.identity == 0 && enc.gzip == 0) {
    plan.status = 406;
    return plan;
  }
  plan.length = file.size;
  plan.identity_allowed = enc.identity > 0;
  plan.gzip = enc.gzip > 0 && (enc.identity == 0 || (enc.gzip >= enc.identity && file.size > 0 &&
                                                     !IsCompressedFormat(path)));
  if (plan.gzip) plan.headers.set(bhttp::field::content_encoding, "gzip");
  return plan;
}

}  // namespace kiln::envd
