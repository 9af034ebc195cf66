#pragma once

// Plain-text output helpers: aligned tables (docker-style, two spaces between columns) and
// human times.

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::cli {

// Columns are padded to their widest cell (counted in UTF-8 code points); the last column
// is not padded. Every line ends with '\n'. Control characters in cells become '?', so a
// value cannot move the cursor or break the layout.
std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

// "5s ago", "3m ago", "2h ago", "4d ago" for times before `now`; "in 4m" for later ones.
// Input is RFC 3339; returns it unchanged when it does not parse, "-" when empty.
std::string RelativeTime(const std::string& rfc3339, std::chrono::system_clock::time_point now);

// "k1=v1,k2=v2" in key order; "-" when empty.
std::string FormatMetadata(const std::map<std::string, std::string>& metadata);

}  // namespace kiln::cli
