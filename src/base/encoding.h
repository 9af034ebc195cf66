#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kiln {

// Standard base64 with padding.
std::string Base64Encode(std::string_view bytes);
// Same alphabet, no padding.
std::string Base64EncodeNoPad(std::string_view bytes);
// Accepts the standard and the URL-safe alphabet, with or without padding. Whitespace is not
// allowed. nullopt on malformed input.
std::optional<std::string> Base64Decode(std::string_view text);

// RFC 3339 UTC with milliseconds: 2025-01-01T00:00:00.123Z.
std::string FormatRfc3339(int64_t unix_sec, int64_t nsec);
// Parses an RFC 3339 timestamp ("2025-01-01T00:00:00.123Z" or with an offset) to unix ns.
std::optional<int64_t> ParseRfc3339(const std::string& s);

// Lower-case hex.
std::string HexEncode(std::string_view bytes);

// Compares two strings in time that depends only on their lengths.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace kiln
