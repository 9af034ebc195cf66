#include "cli/table.h"

#include <algorithm>

#include "base/encoding.h"

namespace kiln::cli {

namespace {

size_t DisplayWidth(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;  // count lead bytes only
  }
  return n;
}

std::string CleanCell(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  return out;
}

std::string Span(int64_t seconds) {
  if (seconds < 60) return std::to_string(seconds) + "s";
  if (seconds < 3600) return std::to_string(seconds / 60) + "m";
  if (seconds < 48 * 3600) return std::to_string(seconds / 3600) + "h";
  return std::to_string(seconds / 86400) + "d";
}

}  // namespace

std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::vector<std::string>> cells;
  cells.reserve(rows.size() + 1);
  cells.push_back(header);
  for (const auto& r : rows) cells.push_back(r);
  size_t columns = header.size();
  for (auto& r : cells) {
    r.resize(columns);
    for (auto& c : r) c = CleanCell(c);
  }
  std::vector<size_t> width(columns, 0);
  for (const auto& r : cells) {
    for (size_t i = 0; i < columns; ++i) width[i] = std::max(width[i], DisplayWidth(r[i]));
  }
  std::string out;
  for (const auto& r : cells) {
    std::string line;
    for (size_t i = 0; i < columns; ++i) {
      line += r[i];
      if (i + 1 < columns) line.append(width[i] - DisplayWidth(r[i]) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

std::string RelativeTime(const std::string& rfc3339, std::chrono::system_clock::time_point now) {
  if (rfc3339.empty()) return "-";
  auto ns = ParseRfc3339(rfc3339);
  if (!ns) return rfc3339;
  int64_t now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  int64_t diff_s = (*ns - now_ns) / 1000000000;
  if (diff_s > 0) return "in " + Span(diff_s);
  return Span(-diff_s) + " ago";
}

std::string FormatMetadata(const std::map<std::string, std::string>& metadata) {
  if (metadata.empty()) return "-";
  std::string out;
  for (const auto& [k, v] : metadata) {
    if (!out.empty()) out += ',';
    out += k + "=" + v;
  }
  return out;
}

}  // namespace kiln::cli
