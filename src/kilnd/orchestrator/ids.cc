#include "kilnd/orchestrator/ids.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <random>

namespace kiln::kilnd {
namespace {

void RandomBytes(uint8_t* out, size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) == 1) return;
  // OpenSSL's generator failing is not expected; fall back to the kernel's via random_device.
  std::random_device rd;
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(rd());
}

std::string Hex(const uint8_t* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += kHex[p[i] >> 4];
    out += kHex[p[i] & 15];
  }
  return out;
}

}  // namespace

std::string NewSandboxId() {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::array<uint8_t, 19> raw;
  RandomBytes(raw.data(), raw.size());
  std::string id = "i";
  // b % 36 favours some characters by less than 2%; ids need uniqueness, not uniformity.
  for (uint8_t b : raw) id += kAlphabet[b % 36];
  return id;
}

std::string NewToken() {
  std::array<uint8_t, 32> raw;
  RandomBytes(raw.data(), raw.size());
  return Hex(raw.data(), raw.size());
}

std::string NewApiKey() {
  std::array<uint8_t, 20> raw;
  RandomBytes(raw.data(), raw.size());
  return "e2b_" + Hex(raw.data(), raw.size());
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  return Hex(digest, len);
}

bool IsValidSandboxId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

}  // namespace kiln::kilnd
