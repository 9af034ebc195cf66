// kiln sandbox cp: one file into a sandbox (POST /files, multipart, streamed from disk) or out
// of one (GET /files, streamed to disk through a temporary file renamed at the end).

#include "cli/copy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <random>

#include "base/encoding.h"
#include "base/unique_fd.h"
#include "cli/commands.h"
#include "http/connect.h"

namespace kiln::cli {

namespace {

namespace net = boost::asio;
using nlohmann::json;

constexpr size_t kPiece = 64 * 1024;
constexpr std::chrono::seconds kIoTimeout{60};

std::string FilesTarget(const std::string& path, const std::optional<std::string>& user) {
  std::string target = "/files?path=" + QueryEscape(path);
  if (user) target += "&username=" + QueryEscape(*user);
  return target;
}

// The request line and headers of `req`, for a body we write ourselves.
std::string RawHead(const http::ClientRequest& req, std::string_view content_type,
                    std::optional<uint64_t> length) {
  std::string out(http::beast::http::to_string(req.method));
  out += " " + req.target + " HTTP/1.1\r\n";
  for (const auto& f : req.headers) {
    out.append(f.name_string()).append(": ").append(f.value()).append("\r\n");
  }
  out.append("Content-Type: ").append(content_type).append("\r\n");
  if (length) {
    out += "Content-Length: " + std::to_string(*length) + "\r\n";
  } else {
    out += "Transfer-Encoding: chunked\r\n";
  }
  out += "\r\n";
  return out;
}

// One chunk of a chunked body ("0\r\n\r\n" for empty data: the last chunk).
std::string Chunk(std::string_view data) {
  char size[32];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  std::string out(size, static_cast<size_t>(n));
  out.append(data).append("\r\n");
  return out;
}

std::string BodyPiece(std::string_view data, bool chunked) {
  return chunked ? Chunk(data) : std::string(data);
}

// The closing boundary, plus the last chunk when chunked.
std::string BodyEnd(std::string_view tail, bool chunked) {
  return chunked ? Chunk(tail) + Chunk("") : std::string(tail);
}

// `dir`/<file name of `source`>; "" when the source has no name (stdin).
std::string PathInDirectory(const std::string& dir, const std::string& source) {
  std::string name = source == "-" ? "" : BaseName(source);
  if (name.empty()) return "";
  return dir + (dir.ends_with('/') ? "" : "/") + name;
}

http::Task<Status> WriteRaw(http::ClientConnection& conn, std::string_view data) {
  auto& stream = conn.stream();
  boost::system::error_code ec;
  stream.expires_after(kIoTimeout);
  co_await net::async_write(stream, net::buffer(data.data(), data.size()),
                            net::redirect_error(net::use_awaitable, ec));
  stream.expires_never();
  if (ec) co_return Fail(Errc::kUnavailable, "upload: " + ec.message());
  co_return Status();
}

// Reads the rest of a response (small: a JSON answer or error).
http::Task<Result<http::ClientResponse>> FinishResponse(http::ClientConnection& conn,
                                                        http::ClientResponse head) {
  for (;;) {
    KILN_CO_ASSIGN_OR_RETURN(std::string piece, co_await conn.ReadSome(kPiece, kIoTimeout));
    if (piece.empty()) break;
    if (head.body.size() < (1 << 20)) head.body += piece;
  }
  co_return head;
}

Result<ssize_t> ReadSome(int fd, char* buf, size_t size, std::string_view name) {
  for (;;) {
    ssize_t n = ::read(fd, buf, size);
    if (n >= 0) return n;
    if (errno != EINTR) return FailErrno("read " + std::string(name));
  }
}

struct LocalSource {
  UniqueFd owned;
  int fd = -1;
  std::optional<uint64_t> size;  // known for regular files
};

Result<LocalSource> OpenSource(const std::string& path, const Io& io) {
  LocalSource src;
  if (path == "-") {
    src.fd = io.in;
  } else {
    src.owned.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!src.owned) return FailErrno(path);
    src.fd = src.owned.get();
  }
  struct stat st {};
  if (fstat(src.fd, &st) != 0) return FailErrno("stat " + path);
  if (S_ISDIR(st.st_mode)) {
    return Fail(Errc::kInvalidArgument, path + " is a directory (cp copies single files)");
  }
  if (S_ISREG(st.st_mode)) src.size = static_cast<uint64_t>(st.st_size);
  return src;
}

// A file created beside its destination and renamed over it on Commit(); removed otherwise.
class TempFile {
 public:
  static Result<TempFile> Create(const std::string& dest) {
    std::string pattern = dest + ".kiln-XXXXXX";
    int fd = mkostemp(pattern.data(), O_CLOEXEC);
    if (fd < 0) return FailErrno("create " + pattern);
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    return TempFile(UniqueFd(fd), std::move(pattern), dest);
  }
  TempFile(TempFile&& o) noexcept
      : fd_(std::move(o.fd_)), path_(std::exchange(o.path_, "")), dest_(std::move(o.dest_)) {}
  ~TempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  int fd() const { return fd_.get(); }
  Status Commit() {
    if (::close(fd_.release()) != 0) return FailErrno("write " + dest_);
    if (::rename(path_.c_str(), dest_.c_str()) != 0) return FailErrno("rename to " + dest_);
    path_.clear();
    return {};
  }

 private:
  TempFile(UniqueFd fd, std::string path, std::string dest)
      : fd_(std::move(fd)), path_(std::move(path)), dest_(std::move(dest)) {}
  UniqueFd fd_;
  std::string path_;
  std::string dest_;
};

std::string LocalDestination(const std::string& dst, const std::string& remote_path) {
  struct stat st {};
  bool dir = dst.ends_with('/') || (::stat(dst.c_str(), &st) == 0 && S_ISDIR(st.st_mode));
  if (!dir) return dst;
  std::string out = dst;
  if (!out.ends_with('/')) out += '/';
  return out + BaseName(remote_path);
}

json StatRequest(const std::string& path) {
  json req = json::object();
  req["path"] = path;
  return req;
}

// True when `path` is a directory in the sandbox; false when it is not or cannot be told.
http::Task<bool> IsRemoteDirectory(KilndClient& kilnd, http::ClientConnection& conn,
                                   const SandboxAccess& access, const std::string& path,
                                   const std::optional<std::string>& user) {
  http::ClientRequest req =
      kilnd.EnvdRequest(access, http::Verb::post, "/filesystem.Filesystem/Stat", user);
  req.headers.set("Connect-Protocol-Version", "1");
  req.body = http::connect::Dump(StatRequest(path));
  auto res = co_await conn.Send(std::move(req), kIoTimeout, 1 << 20);
  if (!res || res->status != 200) co_return false;
  json j = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("entry") || !j["entry"].is_object()) co_return false;
  co_return j["entry"].value("type", "") == "FILE_TYPE_DIRECTORY";
}

// The upload's destination: `dst.path`, or the source's file name inside it when it names a
// directory (a trailing '/' or, per Stat, an existing directory).
http::Task<Result<std::string>> UploadPath(CommandContext& ctx, http::ClientConnection& conn,
                                           const SandboxAccess& access, const CopyOperand& src,
                                           const CopyOperand& dst,
                                           const std::optional<std::string>& user) {
  bool into_dir = dst.path.ends_with('/');
  if (!into_dir) into_dir = co_await IsRemoteDirectory(ctx.kilnd, conn, access, dst.path, user);
  if (!into_dir) co_return dst.path;
  std::string path = PathInDirectory(dst.path, src.path);
  if (path.empty()) co_return Fail(Errc::kInvalidArgument, "give a file name for " + dst.path);
  co_return path;
}

// Streams `source` as the one part of a multipart body after `head` (request line and
// headers): with Content-Length when the size is known, chunked otherwise.
http::Task<Status> SendMultipartBody(http::ClientConnection& conn, const std::string& head,
                                     const MultipartFraming& framing, const LocalSource& source,
                                     const std::string& name) {
  bool chunked = !source.size;
  KILN_CO_TRY(co_await WriteRaw(conn, head));
  // Named locals, not conditional temporaries, in co_await expressions: g++ 12 destroys
  // such temporaries twice.
  std::string part_head = BodyPiece(framing.head, chunked);
  KILN_CO_TRY(co_await WriteRaw(conn, part_head));
  std::string buf(kPiece, '\0');
  uint64_t sent = 0;
  for (;;) {
    KILN_CO_ASSIGN_OR_RETURN(ssize_t n, ReadSome(source.fd, buf.data(), buf.size(), name));
    if (n == 0) break;
    std::string_view piece(buf.data(), static_cast<size_t>(n));
    sent += piece.size();
    if (source.size && sent > *source.size) {
      co_return Fail(Errc::kFailedPrecondition, name + " grew while it was copied");
    }
    std::string out = BodyPiece(piece, chunked);
    KILN_CO_TRY(co_await WriteRaw(conn, out));
  }
  if (source.size && sent != *source.size) {
    co_return Fail(Errc::kFailedPrecondition, name + " shrank while it was copied");
  }
  std::string part_tail = BodyEnd(framing.tail, chunked);
  KILN_CO_TRY(co_await WriteRaw(conn, part_tail));
  co_return Status();
}

http::Task<Result<int>> Upload(CommandContext& ctx, const CopyOperand& src,
                               const CopyOperand& dst, const std::optional<std::string>& user) {
  KILN_CO_ASSIGN_OR_RETURN(LocalSource source, OpenSource(src.path, ctx.io));
  KILN_CO_ASSIGN_OR_RETURN(SandboxAccess access, co_await ctx.kilnd.Access(dst.sandbox_id));
  std::string remote;
  {
    KILN_CO_ASSIGN_OR_RETURN(http::ClientConnection probe, co_await ctx.kilnd.Connect());
    KILN_CO_ASSIGN_OR_RETURN(remote, co_await UploadPath(ctx, probe, access, src, dst, user));
  }
  // A fresh connection for the upload, whatever the proxy did with the probe's.
  KILN_CO_ASSIGN_OR_RETURN(http::ClientConnection conn, co_await ctx.kilnd.Connect());
  MultipartFraming framing = MakeMultipartFraming(RandomBoundary(), remote);
  std::optional<uint64_t> length;
  if (source.size) length = framing.head.size() + *source.size + framing.tail.size();
  http::ClientRequest req =
      ctx.kilnd.EnvdRequest(access, http::Verb::post, FilesTarget(remote, user), user);
  std::string head = RawHead(req, framing.content_type, length);
  KILN_CO_TRY(co_await SendMultipartBody(conn, head, framing, source, src.path));
  KILN_CO_ASSIGN_OR_RETURN(http::ClientResponse answer, co_await conn.ReadResponseHead(kIoTimeout));
  KILN_CO_ASSIGN_OR_RETURN(http::ClientResponse res,
                           co_await FinishResponse(conn, std::move(answer)));
  if (res.status != 200) co_return Unexpected(ResponseError(res));
  co_return 0;
}

http::Task<Result<int>> Download(CommandContext& ctx, const CopyOperand& src,
                                 const CopyOperand& dst, const std::optional<std::string>& user) {
  KILN_CO_ASSIGN_OR_RETURN(SandboxAccess access, co_await ctx.kilnd.Access(src.sandbox_id));
  KILN_CO_ASSIGN_OR_RETURN(http::ClientConnection conn, co_await ctx.kilnd.Connect());
  http::ClientRequest req =
      ctx.kilnd.EnvdRequest(access, http::Verb::get, FilesTarget(src.path, user), user);
  KILN_CO_ASSIGN_OR_RETURN(http::ClientResponse head,
                           co_await conn.SendForStream(std::move(req), kIoTimeout));
  if (head.status != 200) {
    KILN_CO_ASSIGN_OR_RETURN(http::ClientResponse res, co_await FinishResponse(conn, std::move(head)));
    co_return Unexpected(ResponseError(res));
  }
  std::optional<TempFile> temp;
  int out = ctx.io.out;
  if (dst.path != "-") {
    std::string dest = LocalDestination(dst.path, src.path);
    KILN_CO_ASSIGN_OR_RETURN(TempFile t, TempFile::Create(dest));
    temp.emplace(std::move(t));
    out = temp->fd();
  }
  for (;;) {
    KILN_CO_ASSIGN_OR_RETURN(std::string piece, co_await conn.ReadSome(kPiece, kIoTimeout));
    if (piece.empty()) break;
    auto written = WriteAll(out, piece);
    if (!written) co_return Unexpected(std::move(written).error().Wrap(dst.path));
  }
  if (temp) KILN_CO_TRY(temp->Commit());
  co_return 0;
}

}  // namespace

Result<CopyOperand> ParseCopyOperand(std::string_view arg) {
  if (arg.empty()) return Fail(Errc::kInvalidArgument, "empty path");
  CopyOperand op;
  size_t colon = arg.find(':');
  if (arg[0] != '/' && arg[0] != '.' && colon != std::string_view::npos &&
      IsSandboxId(arg.substr(0, colon))) {
    op.remote = true;
    op.sandbox_id = std::string(arg.substr(0, colon));
    op.path = std::string(arg.substr(colon + 1));
    if (op.path.empty()) {
      return Fail(Errc::kInvalidArgument, "missing path after \"" + op.sandbox_id + ":\"");
    }
    return op;
  }
  op.path = std::string(arg);
  return op;
}

std::string BaseName(std::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

MultipartFraming MakeMultipartFraming(std::string_view boundary, std::string_view filename) {
  std::string name;
  for (char c : filename) {
    if (c == '"') {
      name += "%22";
    } else if (c == '\r' || c == '\n') {
      name += ' ';
    } else {
      name += c;
    }
  }
  MultipartFraming f;
  f.boundary = std::string(boundary);
  f.content_type = "multipart/form-data; boundary=" + f.boundary;
  f.head = "--" + f.boundary +
           "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name +
           "\"\r\nContent-Type: application/octet-stream\r\n\r\n";
  f.tail = "\r\n--" + f.boundary + "--\r\n";
  return f;
}

std::string RandomBoundary() {
  std::random_device rd;
  std::string bytes;
  for (int i = 0; i < 16; ++i) bytes += static_cast<char>(rd() & 0xff);
  return "kiln-" + HexEncode(bytes);
}

http::Task<Result<int>> RunCopy(CommandContext& ctx, const CopyCommand& cmd) {
  auto parse = [](const std::string& arg) { return ParseCopyOperand(arg); };
  KILN_CO_ASSIGN_OR_RETURN(CopyOperand src, parse(cmd.src));
  KILN_CO_ASSIGN_OR_RETURN(CopyOperand dst, parse(cmd.dst));
  if (src.remote && dst.remote) {
    co_return Fail(Errc::kInvalidArgument, "copying between sandboxes is not supported");
  }
  if (!src.remote && !dst.remote) {
    co_return Fail(Errc::kInvalidArgument, "one side of cp must be ID:PATH in a sandbox");
  }
  if (dst.remote) co_return co_await Upload(ctx, src, dst, cmd.user);
  co_return co_await Download(ctx, src, dst, cmd.user);
}

}  // namespace kiln::cli
