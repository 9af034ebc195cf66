#include "envd/files/signature.h"

#include <openssl/evp.h>

#include <charconv>

#include "base/encoding.h"

namespace kiln::envd {
namespace {

std::string Sha256(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
    return std::string();  // cannot happen for SHA-256; an empty digest never matches
  }
  return std::string(reinterpret_cast<const char*>(digest), size);
}

std::optional<int64_t> ParseUnixTime(std::string_view s) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

std::string_view FileOpName(FileOp op) { return op == FileOp::kRead ? "read" : "write"; }

std::string FileUrlSignature(std::string_view path, FileOp op, std::string_view username,
                             std::string_view token, std::optional<std::string_view> expiration) {
  std::string raw;
  raw.append(path).append(":").append(FileOpName(op)).append(":");
  raw.append(username).append(":").append(token);
  if (expiration) raw.append(":").append(*expiration);
  std::string digest = Sha256(raw);
  if (digest.empty()) return std::string();
  return "v1_" + Base64EncodeNoPad(digest);
}

Status CheckFilesAccess(const http::RequestHead& head, const std::optional<std::string>& token,
                        FileOp op, int64_t now_unix) {
  if (!token) return Status();
  if (std::string_view header = head.Header("x-access-token"); !header.empty()) {
    if (ConstantTimeEquals(header, *token)) return Status();
    return Fail(Errc::kUnauthenticated, "access token present in header but does not match");
  }
  std::optional<std::string> signature = head.Query("signature");
  if (!signature) return Fail(Errc::kUnauthenticated, "missing signature query parameter");
  std::optional<std::string> expiration = head.Query("signature_expiration");
  std::optional<int64_t> expires_at;
  if (expiration) {
    expires_at = ParseUnixTime(*expiration);
    if (!expires_at) return Fail(Errc::kInvalidArgument, "invalid signature_expiration");
  }
  std::string expected = FileUrlSignature(head.Query("path").value_or(""), op,
                                          head.Query("username").value_or(""), *token,
                                          expiration ? std::optional<std::string_view>(*expiration)
                                                     : std::nullopt);
  if (expected.empty() || !ConstantTimeEquals(*signature, expected)) {
    return Fail(Errc::kUnauthenticated, "invalid signature");
  }
  if (expires_at && *expires_at < now_unix) {
    return Fail(Errc::kUnauthenticated, "signature is already expired");
  }
  return Status();
}

}  // namespace kiln::envd
