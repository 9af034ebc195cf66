// The file tools of `kiln mcp`: read_file and write_file (envd's /files route), list_dir
// (filesystem.Filesystem/ListDir), upload and download (the copy code of `kiln sandbox cp`).

#include <sys/stat.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "cli/commands.h"
#include "cli/copy.h"
#include "cli/mcp_sandbox_tools.h"
#include "cli/table.h"
#include "http/connect.h"

namespace kiln::cli::mcp {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kMaxReadBytes = 4 << 20;
constexpr std::chrono::seconds kFileTimeout{60};

std::string FilesTarget(const std::string& path, const std::optional<std::string>& user) {
  std::string target = "/files?path=" + QueryEscape(path);
  if (user) target += "&username=" + QueryEscape(*user);
  return target;
}

std::string Plural(size_t n, std::string_view one) {
  return std::to_string(n) + " " + std::string(one) + (n == 1 ? "" : "s");
}

json ImageBlock(std::string data, std::string mime) {
  json c = json::object();
  c["type"] = "image";
  c["data"] = std::move(data);
  c["mimeType"] = std::move(mime);
  return c;
}

std::string TypeName(const json& entry) {
  std::string t = entry.value("type", "");
  if (t.starts_with("FILE_TYPE_")) t = t.substr(10);
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t == "directory") return "dir";
  return t.empty() ? "?" : t;
}

std::string SizeText(const json& entry) {
  auto it = entry.find("size");
  if (it == entry.end()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

json DirEntries(const json& answer) {
  json out = json::array();
  auto entries = answer.find("entries");
  if (entries == answer.end() || !entries->is_array()) return out;
  for (const auto& e : *entries) {
    if (!e.is_object()) continue;
    json item = json::object();
    item["name"] = e.value("name", "");
    item["path"] = e.value("path", "");
    item["type"] = TypeName(e);
    std::string size = SizeText(e);
    item["size"] = size.empty() ? json(nullptr) : json(std::strtoll(size.c_str(), nullptr, 10));
    item["permissions"] = e.value("permissions", "");
    item["owner"] = e.value("owner", "");
    item["modified"] = e.value("modifiedTime", "");
    if (e.contains("symlinkTarget") && e["symlinkTarget"].is_string()) {
      item["symlink_target"] = e["symlinkTarget"];
    }
    out.push_back(std::move(item));
  }
  return out;
}

std::string DirText(const std::string& path, const json& entries) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : entries) {
    std::string shown = e.value("path", "");
    if (e.value("type", "") == "dir") shown += "/";
    if (e.contains("symlink_target")) shown += " -> " + e["symlink_target"].get<std::string>();
    rows.push_back({e.value("type", ""), e["size"].is_null() ? "-" : e["size"].dump(),
                    e.value("permissions", ""), e.value("owner", ""), shown});
  }
  std::string text = path + ": " + Plural(entries.size(), "entry") + "\n";
  if (!rows.empty()) text += FormatTable({"TYPE", "SIZE", "PERMISSIONS", "OWNER", "PATH"}, rows);
  return text;
}

json ListDirBody(const std::string& path, int64_t depth) {
  json body = json::object();
  body["path"] = path;
  body["depth"] = depth;
  return body;
}

json StatBody(const std::string& path) {
  json body = json::object();
  body["path"] = path;
  return body;
}

// A host path made absolute (relative ones start at our working directory), so it never
// reads as "ID:PATH" or "-" to the copy code.
Result<std::string> HostPath(const std::string& path) {
  if (path.empty()) return Fail(Errc::kInvalidArgument, "host_path must not be empty");
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (ec) return Fail(Errc::kInvalidArgument, "host path " + path + ": " + ec.message());
  return abs.lexically_normal().string();
}

std::string DownloadDestination(const std::string& host, const std::string& remote) {
  struct stat st {};
  bool dir = host.ends_with('/') || (::stat(host.c_str(), &st) == 0 && S_ISDIR(st.st_mode));
  if (!dir) return host;
  return host + (host.ends_with('/') ? "" : "/") + BaseName(remote);
}

std::optional<int64_t> LocalSize(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return static_cast<int64_t>(st.st_size);
}

std::string UploadedPath(const json& answer, const std::string& fallback) {
  if (answer.is_array() && !answer.empty() && answer[0].is_object()) {
    std::string p = answer[0].value("path", "");
    if (!p.empty()) return p;
  }
  return fallback;
}

json PathResult(std::string_view key, const std::string& value, const std::string& id) {
  json s = json::object();
  s[std::string(key)] = value;
  s["sandbox_id"] = id;
  return s;
}

}  // namespace

bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and values above U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

std::string ImageType(std::string_view b) {
  if (b.starts_with("\x89PNG\r\n\x1a\n")) return "image/png";
  if (b.starts_with("\xff\xd8\xff")) return "image/jpeg";
  if (b.starts_with("GIF87a") || b.starts_with("GIF89a")) return "image/gif";
  if (b.size() >= 12 && b.starts_with("RIFF") && b.substr(8, 4) == "WEBP") return "image/webp";
  return "";
}

http::Task<Result<json>> SandboxTools::ReadFileTool(const json& args) {
  std::string path = OptString(args, "path").value_or("");
  if (path.empty()) co_return Fail(Errc::kInvalidArgument, "path must not be empty");
  std::string encoding = OptString(args, "encoding").value_or("utf-8");
  std::optional<std::string> user = OptString(args, "user");
  KILN_CO_ASSIGN_OR_RETURN(Target target, co_await Resolve(args));
  KilndClient kilnd = Client();
  KILN_CO_ASSIGN_OR_RETURN(SandboxAccess access, co_await kilnd.Access(target.id));
  KILN_CO_ASSIGN_OR_RETURN(http::ClientConnection conn, co_await kilnd.Connect());
  http::ClientRequest req = kilnd.EnvdRequest(access, http::Verb::get, FilesTarget(path, user), user);
  auto res = co_await conn.Send(std::move(req), kFileTimeout, kMaxReadBytes);
  if (!res) {
    if (res.error().code() == Errc::kResourceExhausted) {
      co_return Fail(Errc::kResourceExhausted,
                     "read " + path + ": the file is larger than 4 MiB; use download, or "
                     "run_command with head/tail/grep to look at parts of it");
    }
    co_return Unexpected(std::move(res).error().Wrap("read " + path));
  }
  if (res->status != 200) co_return Unexpected(ResponseError(*res).Wrap("read " + path));
  std::string& bytes = res->body;
  json structured = PathResult("path", path, target.id);
  structured["size"] = bytes.size();
  std::string image = ImageType(bytes);
  if (!image.empty()) {
    json out = TextResult(path + ": " + image + ", " + Plural(bytes.size(), "byte") + "\n" + target.note,
                          std::move(structured));
    out["content"].push_back(ImageBlock(Base64Encode(bytes), image));
    co_return out;
  }
  if (encoding == "base64") {
    structured["encoding"] = "base64";
    co_return TextResult(Base64Encode(bytes), std::move(structured));
  }
  if (!IsUtf8(bytes)) {
    co_return Fail(Errc::kInvalidArgument,
                   "read " + path + ": binary file (" + Plural(bytes.size(), "byte") +
                       ", not UTF-8 text); read it with encoding \"base64\", or download it");
  }
  if (bytes.empty()) co_return TextResult("(" + path + " is empty)\n" + target.note, std::move(structured));
  if (!target.note.empty()) bytes += "\n" + target.note;
  co_return TextResult(std::move(bytes), std::move(structured));
}

http::Task<Result<json>> SandboxTools::WriteFileTool(const json& args) {
  std::string path = OptString(args, "path").value_or("");
  if (path.empty()) co_return Fail(Errc::kInvalidArgument, "path must not be empty");
  std::string content = OptString(args, "content").value_or("");
  if (OptString(args, "encoding").value_or("utf-8") == "base64") {
    std::optional<std::string> decoded = Base64Decode(content);
    if (!decoded) co_return Fail(Errc::kInvalidArgument, "content is not valid base64");
    content = std::move(*decoded);
  }
  std::optional<std::string> user = OptString(args, "user");
  KILN_CO_ASSIGN_OR_RETURN(Target target, co_await Resolve(args));
  KilndClient kilnd = Client();
  KILN_CO_ASSIGN_OR_RETURN(SandboxAccess access, co_await kilnd.Access(target.id));
  KILN_CO_ASSIGN_OR_RETURN(http::ClientConnection conn, co_await kilnd.Connect());
  MultipartFraming framing = MakeMultipartFraming(RandomBoundary(), path);
  http::ClientRequest req = kilnd.EnvdRequest(access, http::Verb::post, FilesTarget(path, user), user);
  req.content_type = framing.content_type;
  req.body = framing.head + content + framing.tail;
  auto res = co_await conn.Send(std::move(req), kFileTimeout, 1 << 20);
  if (!res) co_return Unexpected(std::move(res).error().Wrap("write " + path));
  if (res->status != 200) co_return Unexpected(ResponseError(*res).Wrap("write " + path));
  json answer = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  std::string written = UploadedPath(answer, path);
  json structured = PathResult("path", written, target.id);
  structured["size"] = content.size();
  co_return TextResult("Wrote " + Plural(content.size(), "byte") + " to " + written + ".\n" + target.note,
                       std::move(structured));
}

http::Task<Result<json>> SandboxTools::ListDirTool(const json& args) {
  std::string path = OptString(args, "path").value_or("");
  if (path.empty()) path = "~";
  int64_t depth = OptInt(args, "depth").value_or(1);
  std::optional<std::string> user = OptString(args, "user");
  KILN_CO_ASSIGN_OR_RETURN(Target target, co_await Resolve(args));
  KilndClient kilnd = Client();
  KILN_CO_ASSIGN_OR_RETURN(SandboxAccess access, co_await kilnd.Access(target.id));
  KILN_CO_ASSIGN_OR_RETURN(http::ClientConnection conn, co_await kilnd.Connect());
  http::ClientRequest req =
      kilnd.EnvdRequest(access, http::Verb::post, "/filesystem.Filesystem/ListDir", user);
  req.headers.set("Connect-Protocol-Version", "1");
  req.content_type = "application/json";
  req.body = http::connect::Dump(ListDirBody(path, depth));
  auto res = co_await conn.Send(std::move(req), kFileTimeout, 64 << 20);
  if (!res) co_return Unexpected(std::move(res).error().Wrap("list " + path));
  if (res->status != 200) co_return Unexpected(ResponseError(*res).Wrap("list " + path));
  json answer = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (!answer.is_object()) co_return Fail(Errc::kInternal, "list " + path + ": malformed answer");
  json entries = DirEntries(answer);
  std::string text = DirText(path, entries) + target.note;
  json structured = PathResult("path", path, target.id);
  structured["entries"] = std::move(entries);
  co_return TextResult(std::move(text), std::move(structured));
}

http::Task<Result<json>> SandboxTools::UploadTool(const json& args) {
  KILN_CO_ASSIGN_OR_RETURN(std::string host, HostPath(OptString(args, "host_path").value_or("")));
  std::string remote = OptString(args, "sandbox_path").value_or("");
  if (remote.empty()) co_return Fail(Errc::kInvalidArgument, "sandbox_path must not be empty");
  std::optional<std::string> user = OptString(args, "user");
  KILN_CO_ASSIGN_OR_RETURN(Target target, co_await Resolve(args));
  KilndClient kilnd = Client();
  // Where the file lands: inside sandbox_path when that is a directory.
  std::string dest = remote;
  if (dest.ends_with('/')) {
    dest += BaseName(host);
  } else {
    KILN_CO_ASSIGN_OR_RETURN(SandboxAccess access, co_await kilnd.Access(target.id));
    KILN_CO_ASSIGN_OR_RETURN(http::ClientConnection conn, co_await kilnd.Connect());
    http::ClientRequest req =
        kilnd.EnvdRequest(access, http::Verb::post, "/filesystem.Filesystem/Stat", user);
    req.headers.set("Connect-Protocol-Version", "1");
    req.content_type = "application/json";
    req.body = http::connect::Dump(StatBody(dest));
    auto res = co_await conn.Send(std::move(req), kFileTimeout, 1 << 20);
    if (res && res->status == 200) {
      json j = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("entry") && j["entry"].is_object() &&
          j["entry"].value("type", "") == "FILE_TYPE_DIRECTORY") {
        dest += "/" + BaseName(host);
      }
    }
  }
  Io io;
  Environment env;
  CommandContext ctx{io, env, kilnd};
  CopyCommand copy{host, target.id + ":" + dest, user};
  KILN_CO_TRY(co_await RunCopy(ctx, copy));
  std::optional<int64_t> size = LocalSize(host);
  json structured = PathResult("sandbox_path", dest, target.id);
  structured["host_path"] = host;
  if (size) structured["size"] = *size;
  std::string text = "Uploaded " + host + (size ? " (" + Plural(static_cast<size_t>(*size), "byte") + ")" : "") +
                     " to " + dest + " in sandbox " + target.id + ".\n" + target.note;
  co_return TextResult(std::move(text), std::move(structured));
}

http::Task<Result<json>> SandboxTools::DownloadTool(const json& args) {
  std::string remote = OptString(args, "sandbox_path").value_or("");
  if (remote.empty()) co_return Fail(Errc::kInvalidArgument, "sandbox_path must not be empty");
  KILN_CO_ASSIGN_OR_RETURN(std::string host_arg, HostPath(OptString(args, "host_path").value_or("")));
  // A trailing '/' is meaningful (a directory); lexically_normal keeps it.
  std::string host = DownloadDestination(host_arg, remote);
  std::optional<std::string> user = OptString(args, "user");
  KILN_CO_ASSIGN_OR_RETURN(Target target, co_await Resolve(args));
  KilndClient kilnd = Client();
  Io io;
  Environment env;
  CommandContext ctx{io, env, kilnd};
  CopyCommand copy{target.id + ":" + remote, host, user};
  KILN_CO_TRY(co_await RunCopy(ctx, copy));
  std::optional<int64_t> size = LocalSize(host);
  json structured = PathResult("host_path", host, target.id);
  structured["sandbox_path"] = remote;
  if (size) structured["size"] = *size;
  std::string text = "Downloaded " + remote + " from sandbox " + target.id + " to " + host +
                     (size ? " (" + Plural(static_cast<size_t>(*size), "byte") + ")" : "") + ".\n" +
                     target.note;
  co_return TextResult(std::move(text), std::move(structured));
}

}  // namespace kiln::cli::mcp
