#include "envd/files/files_routes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <memory>

#include "base/log.h"
#include "base/unique_fd.h"
#include "envd/files/download_plan.h"
#include "envd/files/gzip_codec.h"
#include "envd/files/signature.h"
#include "envd/files/upload_session.h"

namespace kiln::envd {
namespace {

namespace bhttp = boost::beast::http;

// Bytes read from disk per step: big enough for throughput, small enough that one transfer
// never holds the agent's thread for long.
constexpr size_t kChunk = 256 * 1024;
// Largest request body piece asked for at once. Exchange::ReadBodySome sizes (and clears) a
// buffer of this size per call while a call usually yields only what one socket read
// delivered, so a larger value costs more than it gains.
constexpr size_t kBodyPiece = 64 * 1024;
// After a failed upload, read at most this much of the rest of the body so the client,
// still sending, gets to see the error instead of a reset connection.
constexpr size_t kDrainLimit = 4 * 1024 * 1024;
// gzip is kept only when the first chunk shrinks below this fraction (in tenths).
constexpr size_t kGzipWorthTenths = 9;

unsigned HttpStatusFor(const Error& e) {
  switch (e.code()) {
    case Errc::kInvalidArgument: return 400;
    case Errc::kUnauthenticated: return 401;
    case Errc::kPermissionDenied: return 403;
    case Errc::kNotFound: return 404;
    case Errc::kAlreadyExists: return 409;
    case Errc::kResourceExhausted:
      return e.sys_errno() == ENOSPC || e.sys_errno() == EDQUOT ? 507 : 500;
    default: return 500;
  }
}

http::Response ErrorResponse(const Error& e) {
  unsigned status = HttpStatusFor(e);
  if (status >= 500) KILN_LOG(Warn, "files request failed", {"error", log::Sanitize(e.message())});
  return http::Response::JsonError(status, e.message());
}

struct Actor {
  sys::UserInfo user;
  std::string path;  // the `path` query parameter resolved for `user`
};

// SECURITY: the auth check for both routes, then the acting user and path.
Result<Actor> Authorize(const http::RequestHead& head, const AgentState& state, FileOp op) {
  KILN_TRY(CheckFilesAccess(head, state.access_token, op, static_cast<int64_t>(time(nullptr))));
  KILN_ASSIGN_OR_RETURN(sys::UserInfo user,
                        state.UserByName(head.Query("username").value_or("")));
  std::string raw = head.Query("path").value_or("");
  KILN_TRY(CheckClientPath(raw));
  std::string path = state.ResolvePath(raw, user);
  return Actor{std::move(user), std::move(path)};
}

// An open regular file and how to answer with it.
struct DownloadJob {
  UniqueFd fd;
  DownloadPlan plan;
};

Result<DownloadJob> PrepareDownload(const http::RequestHead& head, const AgentState& state) {
  KILN_ASSIGN_OR_RETURN(Actor actor, Authorize(head, state, FileOp::kRead));
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is rejected below anyway.
  int fd = open(actor.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return Fail(Errc::kNotFound, "path '" + actor.path + "' does not exist");
    }
    return FailErrno("open " + actor.path);
  }
  DownloadJob job{UniqueFd(fd), {}};
  struct stat st {};
  if (fstat(fd, &st) != 0) return FailErrno("stat " + actor.path);
  if (S_ISDIR(st.st_mode)) {
    return Fail(Errc::kInvalidArgument, "path '" + actor.path + "' is a directory");
  }
  if (!S_ISREG(st.st_mode)) {
    return Fail(Errc::kInvalidArgument, "path '" + actor.path + "' is not a regular file");
  }
  FileVersion version{static_cast<uint64_t>(st.st_size), st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
  job.plan = PlanDownload(head, actor.path, version);
  return job;
}

// Answers without a body from the file: 304, 406, 416, or an empty file.
http::Response HeadersOnlyResponse(const DownloadPlan& plan) {
  http::Response r;
  if (plan.status == 406) r = http::Response::JsonError(406, "no acceptable content encoding");
  if (plan.status == 416) r = http::Response::JsonError(416, "requested range not satisfiable");
  r.status = plan.status;
  for (const auto& f : plan.headers) {
    if (f.name() == bhttp::field::content_type && !r.body.empty()) continue;
    if (f.name() == bhttp::field::content_encoding) continue;
    r.headers.set(f.name_string(), f.value());
  }
  return r;
}

// Up to `max` bytes at `offset`; empty at end of file.
Result<std::string> ReadAt(int fd, uint64_t offset, uint64_t max) {
  std::string buf(static_cast<size_t>(std::min<uint64_t>(max, kChunk)), '\0');
  for (;;) {
    ssize_t n = pread(fd, buf.data(), buf.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("read");
    buf.resize(static_cast<size_t>(n));
    return buf;
  }
}

// Compresses the first chunk. When that does not pay off and the client takes identity,
// switches the plan to identity and returns no encoder (the chunk stays as it is).
Result<std::unique_ptr<GzipEncoder>> StartGzip(DownloadPlan& plan, std::string& chunk) {
  auto encoder = std::make_unique<GzipEncoder>();
  KILN_ASSIGN_OR_RETURN(std::string head, encoder->Write(chunk));
  KILN_ASSIGN_OR_RETURN(std::string flushed, encoder->Flush());
  head += flushed;
  if (plan.identity_allowed && head.size() * 10 > chunk.size() * kGzipWorthTenths) {
    plan.gzip = false;
    plan.headers.erase(bhttp::field::content_encoding);
    return std::unique_ptr<GzipEncoder>();
  }
  chunk = std::move(head);
  return encoder;
}

// One streamed download in progress.
struct Transfer {
  int fd = -1;
  uint64_t offset = 0;
  uint64_t remaining = 0;
  // The size is unknown (a 0-byte regular file such as /proc/*): read until EOF.
  bool until_eof = false;
  std::unique_ptr<GzipEncoder> gzip;
  bool done = false;
  // The first piece to send; empty for an empty file.
  std::string first;
};

// Reads the first chunk and settles the encoding (plan.gzip may be dropped).
Result<Transfer> StartTransfer(DownloadJob& job) {
  DownloadPlan& plan = job.plan;
  Transfer t;
  t.fd = job.fd.get();
  t.offset = plan.offset;
  t.remaining = plan.length;
  t.until_eof = plan.status == 200 && plan.length == 0;
  KILN_ASSIGN_OR_RETURN(t.first, ReadAt(t.fd, t.offset, t.until_eof ? kChunk : t.remaining));
  t.offset += t.first.size();
  if (!t.until_eof) t.remaining -= t.first.size();
  if (plan.gzip && !t.first.empty()) {
    KILN_ASSIGN_OR_RETURN(t.gzip, StartGzip(plan, t.first));
  }
  return t;
}

// The next piece to send: file bytes, gzip-compressed if needed, then the gzip trailer.
// Empty at the end; kInternal when the file shrank below the promised length.
Result<std::string> NextPiece(Transfer& t) {
  if (t.done) return std::string();
  std::string data;
  if (t.until_eof || t.remaining > 0) {
    KILN_ASSIGN_OR_RETURN(data, ReadAt(t.fd, t.offset, t.until_eof ? kChunk : t.remaining));
  }
  if (data.empty()) {
    if (!t.until_eof && t.remaining > 0) {
      return Fail(Errc::kInternal, "file shrank while it was being sent");
    }
    t.done = true;
    if (!t.gzip) return data;
    return t.gzip->Finish();
  }
  t.offset += data.size();
  if (!t.until_eof) t.remaining -= data.size();
  if (!t.gzip) return data;
  KILN_ASSIGN_OR_RETURN(std::string out, t.gzip->Write(data));
  // Never hand back an empty piece before the end.
  if (out.empty()) {
    KILN_ASSIGN_OR_RETURN(out, t.gzip->Flush());
  }
  return out;
}

// Sends the headers and every piece of `t`.
http::Task<void> SendTransfer(http::Exchange& ex, const DownloadPlan& plan, Transfer& t) {
  std::optional<uint64_t> length;
  if (!t.gzip && !t.until_eof) length = plan.length;
  if (!co_await ex.StartStream(plan.status, plan.headers, length)) co_return;
  std::string piece = std::move(t.first);
  for (;;) {
    if (!co_await ex.WriteStream(piece)) co_return;
    Result<std::string> next = NextPiece(t);
    if (!next) {
      // Too late for an error status: closing the connection tells the client the body
      // is incomplete.
      ex.set_keep_alive(false);
      co_return;
    }
    if (next->empty()) break;
    piece = std::move(*next);
  }
  co_await ex.FinishStream();
}

Result<std::unique_ptr<UploadSession>> StartUpload(const http::RequestHead& head,
                                                   const AgentState& state) {
  KILN_ASSIGN_OR_RETURN(Actor actor, Authorize(head, state, FileOp::kWrite));
  return UploadSession::Start(head, state, std::move(actor.user));
}

http::Response UploadedResponse(const nlohmann::json& files) {
  return http::Response::Json(
      200, files.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

// Reads the rest of the body (bounded) so an error response can reach the client.
http::Task<void> DrainAndRespond(http::Exchange& ex, http::Response response) {
  size_t drained = 0;
  while (!ex.body_done() && drained < kDrainLimit) {
    Result<std::string> piece = co_await ex.ReadBodySome(kBodyPiece);
    if (!piece || piece->empty()) break;
    drained += piece->size();
  }
  co_await ex.Respond(std::move(response));
}

http::Task<Status> ReceiveBody(http::Exchange& ex, UploadSession& session) {
  for (;;) {
    Result<std::string> piece = co_await ex.ReadBodySome(kBodyPiece);
    if (!piece) co_return Unexpected(std::move(piece).error());
    if (piece->empty()) co_return Status();
    KILN_CO_TRY(session.Feed(*piece));
  }
}

}  // namespace

FilesRoutes::FilesRoutes(boost::asio::io_context& io, AgentState& state) : io_(io), state_(state) {}
FilesRoutes::~FilesRoutes() = default;

void FilesRoutes::Register(http::Router& router) {
  router.Add(http::Verb::get, "/files", [this](http::Exchange& ex) { return Download(ex); });
  router.Add(http::Verb::post, "/files", [this](http::Exchange& ex) { return Upload(ex); });
}

http::Task<void> FilesRoutes::Download(http::Exchange& ex) {
  Result<DownloadJob> job = PrepareDownload(ex.request(), state_);
  if (!job) {
    co_await ex.Respond(ErrorResponse(job.error()));
    co_return;
  }
  if (job->plan.status != 200 && job->plan.status != 206) {
    co_await ex.Respond(HeadersOnlyResponse(job->plan));
    co_return;
  }
  Result<Transfer> transfer = StartTransfer(*job);
  if (!transfer) {
    co_await ex.Respond(ErrorResponse(transfer.error()));
    co_return;
  }
  if (transfer->first.empty()) {  // an empty file: Content-Length: 0, which the SDK relies on
    job->plan.status = 200;
    co_await ex.Respond(HeadersOnlyResponse(job->plan));
    co_return;
  }
  co_await SendTransfer(ex, job->plan, *transfer);
}

http::Task<void> FilesRoutes::Upload(http::Exchange& ex) {
  Result<std::unique_ptr<UploadSession>> session = StartUpload(ex.request(), state_);
  if (!session) {
    co_await DrainAndRespond(ex, ErrorResponse(session.error()));
    co_return;
  }
  Status received = co_await ReceiveBody(ex, **session);
  Result<nlohmann::json> files =
      received ? (*session)->Finish() : Result<nlohmann::json>(Unexpected(received.error()));
  // Release the staged file (and its descriptor) before the client hears back.
  session->reset();
  if (!files) {
    co_await DrainAndRespond(ex, ErrorResponse(files.error()));
    co_return;
  }
  co_await ex.Respond(UploadedResponse(*files));
}

}  // namespace kiln::envd
