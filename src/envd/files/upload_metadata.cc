#include "envd/files/upload_metadata.h"

#include <algorithm>

namespace kiln::envd {
namespace {

constexpr std::string_view kPrefix = "x-metadata-";

bool Printable(std::string_view s, bool allow_space) {
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c > 0x20 && c < 0x7f) || (allow_space && c == ' ');
  });
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

}  // namespace

Result<std::map<std::string, std::string>> MetadataFromHeaders(const http::Fields& headers) {
  std::map<std::string, std::string> out;
  size_t total = 0;
  for (const auto& field : headers) {
    std::string name = Lower(std::string_view(field.name_string().data(),
                                              field.name_string().size()));
    if (!name.starts_with(kPrefix)) continue;
    std::string key = name.substr(kPrefix.size());
    std::string_view value(field.value().data(), field.value().size());
    if (key.empty()) return Fail(Errc::kInvalidArgument, "empty metadata key");
    if (!Printable(key, false)) {
      return Fail(Errc::kInvalidArgument, "metadata key must be printable ASCII");
    }
    if (!Printable(value, true)) {
      return Fail(Errc::kInvalidArgument,
                  "metadata value for key '" + key + "' must be printable ASCII");
    }
    if (key.size() > kMaxMetadataKeyBytes) {
      return Fail(Errc::kInvalidArgument, "metadata key longer than " +
                                              std::to_string(kMaxMetadataKeyBytes) + " bytes");
    }
    if (out.contains(key)) continue;
    total += key.size() + value.size();
    if (total > kMaxMetadataBytes) {
      return Fail(Errc::kInvalidArgument,
                  "metadata larger than " + std::to_string(kMaxMetadataBytes) + " bytes");
    }
    out.emplace(std::move(key), std::string(value));
  }
  return out;
}

}  // namespace kiln::envd
