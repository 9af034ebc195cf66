#pragma once

// Finds the Debian mirror the host's apt uses, so that template builds (debootstrap) fetch from
// the same place as the host: a local mirror or proxy where there is one.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::kilnd::tmpl {

// One binary ("deb") source from apt's configuration.
struct AptSource {
  std::string uri;                  // as written, trailing '/' removed
  std::vector<std::string> suites;  // "bookworm", "bookworm-updates", ...
  std::string signed_by;            // keyring path (or inline key) if the entry names one
};

// Parses deb822 text (/etc/apt/sources.list.d/*.sources): stanzas separated by blank lines,
// "Field: value" with continuation lines, '#' comment lines. Returns one AptSource per URI of
// every stanza whose Types include "deb" and that is not "Enabled: no". Malformed lines are
// skipped.
std::vector<AptSource> ParseDeb822Sources(std::string_view text);

// Parses the one-line format (/etc/apt/sources.list, *.list):
// "deb [opt=value ...] URI suite [component ...]"; '#' starts a comment. deb-src lines and
// malformed lines are skipped.
std::vector<AptSource> ParseOneLineSources(std::string_view text);

// The first source debootstrap can use as a Debian mirror: an http, https or file URI that is
// not a security archive (its URI contains "security") and that is signed by Debian's
// archive keyring (no Signed-By, or one naming a debian-archive keyring). Third-party
// repositories carry their own keyrings, which debootstrap would reject. nullopt if none.
std::optional<std::string> PickDebianMirror(const std::vector<AptSource>& sources);

// The Debian mirror the host's apt uses. Looks at <apt_dir>/sources.list.d/*.sources (sorted),
// then <apt_dir>/sources.list, then <apt_dir>/sources.list.d/*.list (sorted), and returns the
// first usable source (PickDebianMirror). Default: http://deb.debian.org/debian.
std::string HostDebianMirror(const std::filesystem::path& apt_dir = "/etc/apt");

inline constexpr std::string_view kDefaultDebianMirror = "http://deb.debian.org/debian";

}  // namespace kiln::kilnd::tmpl
