#include "kilnd/template/apt_sources.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>
#include <system_error>

namespace kiln::kilnd::tmpl {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::vector<std::string> SplitWords(std::string_view s) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t start = i;
    while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i > start) words.emplace_back(s.substr(start, i - start));
  }
  return words;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

std::string StripSlash(std::string uri) {
  while (uri.size() > 1 && uri.back() == '/') uri.pop_back();
  return uri;
}

// Fields of one deb822 stanza, in order; continuation lines are joined with '\n'.
using Stanza = std::vector<std::pair<std::string, std::string>>;

const std::string* FindField(const Stanza& stanza, std::string_view name) {
  for (const auto& [key, value] : stanza) {
    if (EqualsIgnoreCase(key, name)) return &value;
  }
  return nullptr;
}

void EmitStanza(const Stanza& stanza, std::vector<AptSource>& out) {
  const std::string* types = FindField(stanza, "Types");
  const std::string* uris = FindField(stanza, "URIs");
  if (types == nullptr || uris == nullptr) return;
  std::vector<std::string> type_words = SplitWords(*types);
  if (std::ranges::find(type_words, "deb") == type_words.end()) return;
  if (const std::string* enabled = FindField(stanza, "Enabled");
      enabled != nullptr && EqualsIgnoreCase(Trim(*enabled), "no")) {
    return;
  }
  const std::string* suites = FindField(stanza, "Suites");
  const std::string* signed_by = FindField(stanza, "Signed-By");
  for (std::string& uri : SplitWords(*uris)) {
    AptSource source;
    source.uri = StripSlash(std::move(uri));
    if (suites != nullptr) source.suites = SplitWords(*suites);
    if (signed_by != nullptr) source.signed_by = std::string(Trim(*signed_by));
    out.push_back(std::move(source));
  }
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Files in `dir` with extension `ext`, sorted by name (apt reads them in this order).
std::vector<std::filesystem::path> FilesWithExtension(const std::filesystem::path& dir,
                                                      std::string_view ext) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ext && it->is_regular_file(ec)) files.push_back(it->path());
  }
  std::ranges::sort(files);
  return files;
}

bool UsableScheme(std::string_view uri) {
  return uri.starts_with("http://") || uri.starts_with("https://") || uri.starts_with("file:/");
}

}  // namespace

std::vector<AptSource> ParseDeb822Sources(std::string_view text) {
  std::vector<AptSource> out;
  Stanza stanza;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (Trim(line).empty()) {  // a stanza ends at a blank line
      EmitStanza(stanza, out);
      stanza.clear();
      continue;
    }
    if (line.front() == '#') continue;
    if (line.front() == ' ' || line.front() == '\t') {  // continuation of the last field
      if (!stanza.empty()) {
        std::string_view more = Trim(line);
        stanza.back().second.append("\n").append(more == "." ? std::string_view() : more);
      }
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) continue;
    stanza.emplace_back(std::string(Trim(line.substr(0, colon))),
                        std::string(Trim(line.substr(colon + 1))));
  }
  EmitStanza(stanza, out);
  return out;
}

std::vector<AptSource> ParseOneLineSources(std::string_view text) {
  std::vector<AptSource> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = Trim(line);
    if (!line.starts_with("deb") || line.size() < 4 || !std::isspace(line[3])) continue;
    line = Trim(line.substr(3));
    AptSource source;
    if (line.starts_with('[')) {
      size_t close = line.find(']');
      if (close == std::string_view::npos) continue;
      for (const std::string& opt : SplitWords(line.substr(1, close - 1))) {
        if (opt.starts_with("signed-by=")) source.signed_by = opt.substr(10);
      }
      line = Trim(line.substr(close + 1));
    }
    std::vector<std::string> words = SplitWords(line);
    if (words.size() < 2) continue;  // a URI and a suite at least
    source.uri = StripSlash(words[0]);
    source.suites.push_back(words[1]);
    out.push_back(std::move(source));
  }
  return out;
}

std::optional<std::string> PickDebianMirror(const std::vector<AptSource>& sources) {
  for (const AptSource& s : sources) {
    if (!UsableScheme(s.uri) || s.uri.find("security") != std::string::npos) continue;
    if (!s.signed_by.empty() && s.signed_by.find("debian-archive") == std::string::npos) continue;
    return s.uri;
  }
  return std::nullopt;
}

std::string HostDebianMirror(const std::filesystem::path& apt_dir) {
  std::vector<AptSource> sources;
  for (const auto& file : FilesWithExtension(apt_dir / "sources.list.d", ".sources")) {
    std::vector<AptSource> more = ParseDeb822Sources(ReadFile(file));
    sources.insert(sources.end(), more.begin(), more.end());
  }
  std::vector<AptSource> main_list = ParseOneLineSources(ReadFile(apt_dir / "sources.list"));
  sources.insert(sources.end(), main_list.begin(), main_list.end());
  for (const auto& file : FilesWithExtension(apt_dir / "sources.list.d", ".list")) {
    std::vector<AptSource> more = ParseOneLineSources(ReadFile(file));
    sources.insert(sources.end(), more.begin(), more.end());
  }
  return PickDebianMirror(sources).value_or(std::string(kDefaultDebianMirror));
}

}  // namespace kiln::kilnd::tmpl
