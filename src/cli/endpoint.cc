#include "cli/endpoint.h"

#include <cctype>
#include <charconv>

namespace kiln::cli {

namespace {

Result<uint16_t> ParsePort(std::string_view text, std::string_view url) {
  unsigned v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || v == 0 ||
      v > 65535) {
    return Fail(Errc::kInvalidArgument, "bad port in API URL \"" + std::string(url) + "\"");
  }
  return static_cast<uint16_t>(v);
}

bool ValidHostChars(std::string_view host) {
  for (unsigned char c : host) {
    if (!std::isalnum(c) && c != '.' && c != '-' && c != '_' && c != ':') return false;
  }
  return !host.empty();
}

}  // namespace

Result<Endpoint> ParseEndpoint(std::string_view url) {
  Endpoint ep;
  ep.url = std::string(url);
  constexpr std::string_view kHttp = "http://";
  if (url.starts_with("https://")) {
    return Fail(Errc::kInvalidArgument,
                "the kiln CLI speaks plain HTTP to kilnd; use an http:// API URL (got \"" +
                    std::string(url) + "\")");
  }
  if (!url.starts_with(kHttp)) {
    return Fail(Errc::kInvalidArgument,
                "API URL must look like http://host:port, got \"" + std::string(url) + "\"");
  }
  std::string_view rest = url.substr(kHttp.size());
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view path = rest.substr(slash);
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    if (path.find_first_of("?# ") != std::string_view::npos) {
      return Fail(Errc::kInvalidArgument, "API URL must not have a query: " + std::string(url));
    }
    ep.base_path = std::string(path);
  }
  if (authority.find('@') != std::string_view::npos) {
    return Fail(Errc::kInvalidArgument, "API URL must not carry credentials");
  }
  std::string_view host = authority;
  std::string_view port;
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return Fail(Errc::kInvalidArgument, "bad IPv6 address in API URL " + std::string(url));
    }
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return Fail(Errc::kInvalidArgument, "bad API URL " + std::string(url));
      port = after.substr(1);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Fail(Errc::kInvalidArgument, "IPv6 addresses in URLs need brackets: " +
                                              std::string(url));
    }
  }
  if (!ValidHostChars(host)) {
    return Fail(Errc::kInvalidArgument, "bad host in API URL \"" + std::string(url) + "\"");
  }
  ep.host = std::string(host);
  if (!port.empty() || authority.ends_with(':')) {
    KILN_ASSIGN_OR_RETURN(ep.port, ParsePort(port, url));
  }
  bool v6 = ep.host.find(':') != std::string::npos;
  ep.host_header = v6 ? "[" + ep.host + "]" : ep.host;
  if (ep.port != 80) ep.host_header += ":" + std::to_string(ep.port);
  return ep;
}

}  // namespace kiln::cli
