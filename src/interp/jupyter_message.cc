#include "interp/jupyter_message.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <random>

namespace kiln::interp {
namespace {

using nlohmann::json;

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";
constexpr std::string_view kReplacementEscape = "\\ufffd";

void RandomBytes(uint8_t* out, size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) == 1) return;
  // OpenSSL's generator failing is not expected; fall back to the kernel's.
  std::random_device rd;
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(rd());
}

void AppendHex(std::string& out, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    out += kHexDigits[p[i] >> 4];
    out += kHexDigits[p[i] & 15];
  }
}

std::string_view StringField(const json& obj, const char* key) {
  if (!obj.is_object()) return {};
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return {};
  return it->get_ref<const std::string&>();
}

// At s[i]: the length of the well-formed UTF-8 sequence there (RFC 3629: no overlong forms,
// no surrogates, nothing above U+10FFFF) with `valid`, or else the length of its maximal
// invalid subpart, which becomes one U+FFFD (as Python's "replace" does).
struct Utf8Step {
  bool valid;
  size_t length;
};

Utf8Step Utf8At(std::string_view s, size_t i) {
  auto byte = [&](size_t k) -> unsigned { return static_cast<unsigned char>(s[k]); };
  unsigned c = byte(i);
  if (c < 0x80) return {true, 1};
  size_t n;
  unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return {false, 1};
  }
  for (size_t k = 1; k < n; ++k) {
    if (i + k >= s.size()) return {false, k};
    unsigned b = byte(i + k);
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return {false, k};
  }
  return {true, n};
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The code unit of the escape "\uXXXX" at s[i], or -1 when there is none.
int EscapedCodeUnit(std::string_view s, size_t i) {
  if (i + 6 > s.size() || s[i] != '\\' || s[i + 1] != 'u') return -1;
  int value = 0;
  for (size_t k = i + 2; k < i + 6; ++k) {
    int h = HexValue(s[k]);
    if (h < 0) return -1;
    value = value * 16 + h;
  }
  return value;
}

struct JsonScan {
  bool dirty = false;     // has invalid UTF-8 or lone surrogate escapes
  bool too_deep = false;  // nesting beyond kMaxJsonDepth
};

// One pass over JSON text that tracks strings, escapes and nesting. When `out` is given it
// receives the text with every invalid UTF-8 byte replaced by U+FFFD and every unpaired
// surrogate escape by "\ufffd" (what nlohmann rejects but Python's json module emits).
JsonScan ScanJson(std::string_view s, std::string* out) {
  JsonScan r;
  int depth = 0;
  bool in_string = false;
  auto emit = [&](std::string_view piece) {
    if (out != nullptr) out->append(piece);
  };
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (static_cast<unsigned char>(c) >= 0x80) {
      Utf8Step step = Utf8At(s, i);
      if (step.valid) {
        emit(s.substr(i, step.length));
      } else {
        r.dirty = true;
        emit(kReplacementUtf8);
      }
      i += step.length;
      continue;
    }
    if (in_string) {
      if (c == '"') {
        in_string = false;
      } else if (c == '\\' && i + 1 < s.size()) {
        int unit = EscapedCodeUnit(s, i);
        if (unit >= 0xD800 && unit <= 0xDBFF) {
          int low = EscapedCodeUnit(s, i + 6);
          if (low >= 0xDC00 && low <= 0xDFFF) {
            emit(s.substr(i, 12));
            i += 12;
            continue;
          }
        }
        if (unit >= 0xD800 && unit <= 0xDFFF) {
          r.dirty = true;
          emit(kReplacementEscape);
          i += 6;
          continue;
        }
        emit(s.substr(i, 2));
        i += 2;
        continue;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        r.too_deep = true;
        return r;
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
    emit(s.substr(i, 1));
    ++i;
  }
  return r;
}

Result<json> ParseObjectFrame(std::string_view text, const char* what) {
  Result<json> parsed = ParseJsonTolerant(text);
  if (!parsed) return Unexpected(std::move(parsed).error().Wrap(what));
  if (!parsed->is_object()) {
    return Fail(Errc::kInvalidArgument, std::string(what) + ": not a JSON object");
  }
  return parsed;
}

}  // namespace

std::string_view Message::msg_type() const { return StringField(header, "msg_type"); }
std::string_view Message::msg_id() const { return StringField(header, "msg_id"); }
std::string_view Message::parent_msg_id() const { return StringField(parent_header, "msg_id"); }

void MessageSigner::MacDeleter::operator()(EVP_MAC_CTX* ctx) const { EVP_MAC_CTX_free(ctx); }

MessageSigner::MessageSigner(std::string_view key) : enabled_(!key.empty()) {
  if (!enabled_) return;
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) return;
  ctx_.reset(EVP_MAC_CTX_new(mac));
  EVP_MAC_free(mac);  // the context keeps its own reference
  if (!ctx_) return;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_MAC_init(ctx_.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                   params) != 1) {
    ctx_.reset();  // fail closed: Sign gives "" and Verify rejects everything
  }
}

MessageSigner::MessageSigner(MessageSigner&&) noexcept = default;
MessageSigner& MessageSigner::operator=(MessageSigner&&) noexcept = default;
MessageSigner::~MessageSigner() = default;

std::string MessageSigner::Sign(std::string_view header, std::string_view parent_header,
                                std::string_view metadata, std::string_view content) const {
  if (!enabled_ || !ctx_) return {};
  std::unique_ptr<EVP_MAC_CTX, MacDeleter> ctx(EVP_MAC_CTX_dup(ctx_.get()));
  if (!ctx) return {};
  for (std::string_view part : {header, parent_header, metadata, content}) {
    if (EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(part.data()),
                       part.size()) != 1) {
      return {};
    }
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac;
  size_t len = 0;
  if (EVP_MAC_final(ctx.get(), mac.data(), &len, mac.size()) != 1) return {};
  std::string hex;
  hex.reserve(len * 2);
  AppendHex(hex, mac.data(), len);
  return hex;
}

bool MessageSigner::Verify(std::string_view signature, std::string_view header,
                           std::string_view parent_header, std::string_view metadata,
                           std::string_view content) const {
  if (!enabled_) return true;
  std::string expected = Sign(header, parent_header, metadata, content);
  if (expected.empty() || signature.size() != expected.size()) return false;
  return CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) == 0;
}

std::string NewMessageId() {
  std::array<uint8_t, 16> b;
  RandomBytes(b.data(), b.size());
  b[6] = static_cast<uint8_t>((b[6] & 0x0F) | 0x40);  // version 4
  b[8] = static_cast<uint8_t>((b[8] & 0x3F) | 0x80);  // RFC 4122 variant
  std::string id;
  id.reserve(36);
  for (size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) id += '-';
    AppendHex(id, &b[i], 1);
  }
  return id;
}

std::string IsoTimestampNow() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc{};
  gmtime_r(&ts.tv_sec, &utc);
  char buf[40];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ",
                        utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                        utc.tm_min, utc.tm_sec, static_cast<long>(ts.tv_nsec / 1000));
  return std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
}

Message MakeMessage(std::string_view msg_type, std::string_view session, json content) {
  Message m;
  m.header = json{{"msg_id", NewMessageId()},
                  {"session", session},
                  {"username", "kiln"},
                  {"date", IsoTimestampNow()},
                  {"msg_type", msg_type},
                  {"version", kProtocolVersion}};
  m.content = std::move(content);
  return m;
}

std::vector<std::string> SerializeMessage(const Message& message, const MessageSigner& signer) {
  std::vector<std::string> frames;
  frames.reserve(message.identities.size() + 6 + message.buffers.size());
  frames.insert(frames.end(), message.identities.begin(), message.identities.end());
  frames.emplace_back(kMessageDelimiter);
  frames.emplace_back();  // signature, filled in below
  size_t sig = frames.size() - 1;
  frames.push_back(DumpJson(message.header));
  frames.push_back(DumpJson(message.parent_header));
  frames.push_back(DumpJson(message.metadata));
  frames.push_back(DumpJson(message.content));
  frames[sig] = signer.Sign(frames[sig + 1], frames[sig + 2], frames[sig + 3], frames[sig + 4]);
  frames.insert(frames.end(), message.buffers.begin(), message.buffers.end());
  return frames;
}

Result<Message> ParseMessage(std::vector<std::string> frames, const MessageSigner& signer) {
  size_t delim = 0;
  while (delim < frames.size() && frames[delim] != kMessageDelimiter) ++delim;
  if (delim == frames.size()) {
    return Fail(Errc::kInvalidArgument, "jupyter message: no <IDS|MSG> delimiter");
  }
  if (frames.size() - delim < 6) {
    return Fail(Errc::kInvalidArgument, "jupyter message: truncated (" +
                                            std::to_string(frames.size() - delim - 1) +
                                            " frames after the delimiter, want at least 5)");
  }
  const std::string* f = &frames[delim + 1];
  if (!signer.Verify(f[0], f[1], f[2], f[3], f[4])) {
    return Fail(Errc::kUnauthenticated, "jupyter message: bad signature");
  }
  Message m;
  KILN_ASSIGN_OR_RETURN(m.header, ParseObjectFrame(f[1], "jupyter message: header"));
  KILN_ASSIGN_OR_RETURN(m.parent_header, ParseObjectFrame(f[2], "jupyter message: parent_header"));
  KILN_ASSIGN_OR_RETURN(m.metadata, ParseObjectFrame(f[3], "jupyter message: metadata"));
  KILN_ASSIGN_OR_RETURN(m.content, ParseObjectFrame(f[4], "jupyter message: content"));
  m.identities.assign(std::make_move_iterator(frames.begin()),
                      std::make_move_iterator(frames.begin() + static_cast<ptrdiff_t>(delim)));
  m.buffers.assign(std::make_move_iterator(frames.begin() + static_cast<ptrdiff_t>(delim) + 6),
                   std::make_move_iterator(frames.end()));
  return m;
}

Result<json> ParseJsonTolerant(std::string_view text) {
  JsonScan scan = ScanJson(text, nullptr);
  if (scan.too_deep) {
    return Fail(Errc::kInvalidArgument,
                "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  std::string repaired;
  if (scan.dirty) {
    repaired.reserve(text.size() + 16);
    ScanJson(text, &repaired);
    text = repaired;
  }
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return Fail(Errc::kInvalidArgument, "invalid JSON");
  return value;
}

std::string DumpJson(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace kiln::interp
