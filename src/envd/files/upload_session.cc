#include "envd/files/upload_session.h"

#include <limits.h>

#include "envd/files/upload_metadata.h"

namespace kiln::envd {
namespace {

namespace bhttp = boost::beast::http;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

std::string_view Basename(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Whether the body is gzip-compressed; kInvalidArgument for other codings.
Result<bool> BodyIsGzip(const http::RequestHead& head) {
  std::string coding = Lower(head.Header(bhttp::field::content_encoding));
  while (!coding.empty() && coding.back() == ' ') coding.pop_back();
  while (!coding.empty() && coding.front() == ' ') coding.erase(0, 1);
  if (coding.empty() || coding == "identity") return false;
  if (coding == "gzip" || coding == "x-gzip") return true;
  return Fail(Errc::kInvalidArgument, "unsupported Content-Encoding '" + coding + "'");
}

nlohmann::json UploadJson(const std::string& path,
                          const std::map<std::string, std::string>& metadata) {
  nlohmann::json j = nlohmann::json::object();
  j["name"] = std::string(Basename(path));
  j["type"] = "file";
  j["path"] = path;
  if (!metadata.empty()) j["metadata"] = metadata;
  return j;
}

}  // namespace

Status CheckClientPath(std::string_view raw) {
  if (raw.find('\0') != std::string_view::npos) {
    return Fail(Errc::kInvalidArgument, "invalid path: contains a NUL byte");
  }
  if (raw.size() >= PATH_MAX) return Fail(Errc::kInvalidArgument, "invalid path: too long");
  return Status();
}

UploadSession::UploadSession(const AgentState& state, sys::UserInfo user,
                             std::string path,
                             std::map<std::string, std::string> metadata)
    : state_(state),
      user_(std::move(user)),
      path_(std::move(path)),
      metadata_(std::move(metadata)) {}

UploadSession::~UploadSession() = default;

Result<std::unique_ptr<UploadSession>> UploadSession::Start(const http::RequestHead& head,
                                                            const AgentState& state,
                                                            sys::UserInfo user) {
  KILN_ASSIGN_OR_RETURN(auto metadata, MetadataFromHeaders(head.headers));
  KILN_ASSIGN_OR_RETURN(bool gzip, BodyIsGzip(head));
  std::string path = head.Query("path").value_or("");
  KILN_TRY(CheckClientPath(path));
  std::string_view content_type = head.Header(bhttp::field::content_type);
  std::optional<http::MediaType> media = http::ParseMediaType(content_type);
  std::string type = media ? media->type : std::string();
  std::unique_ptr<UploadSession> session(
      new UploadSession(state, std::move(user), path, std::move(metadata)));
  if (type == "multipart/form-data") {
    KILN_ASSIGN_OR_RETURN(std::string boundary, http::MultipartBoundary(content_type));
    http::MultipartSink& sink = *session;
    session->multipart_ = std::make_unique<http::MultipartParser>(boundary, sink);
  } else if (type == "application/octet-stream") {
    if (path.empty()) {
      return Fail(Errc::kInvalidArgument, "the path query parameter is required for "
                                          "application/octet-stream uploads");
    }
    KILN_TRY(session->BeginFile(path));
  } else {
    return Fail(Errc::kInvalidArgument,
                "unsupported content type '" + std::string(content_type) +
                    "': use multipart/form-data or application/octet-stream");
  }
  if (gzip) {
    UploadSession* self = session.get();
    session->gzip_ =
        std::make_unique<GzipDecoder>([self](std::string_view d) { return self->WriteDecoded(d); });
  }
  return session;
}

Status UploadSession::BeginFile(std::string_view raw_path) {
  KILN_TRY(CheckClientPath(raw_path));
  std::string resolved = state_.ResolvePath(raw_path, user_);
  if (!destinations_.insert(resolved).second) {
    return Fail(Errc::kInvalidArgument, "path '" + resolved + "' is uploaded more than once");
  }
  KILN_ASSIGN_OR_RETURN(PendingFile file,
                        PendingFile::Create(resolved, FileOwner{user_.uid, user_.gid}));
  pending_.emplace(std::move(file));
  pending_path_ = std::move(resolved);
  return Status();
}

Status UploadSession::CommitFile() {
  if (!pending_) return Status();
  Status st = pending_->Commit(metadata_);
  pending_.reset();
  KILN_TRY(st);
  committed_.push_back(std::move(pending_path_));
  return Status();
}

Status UploadSession::Feed(std::string_view piece) {
  if (gzip_) return gzip_->Write(piece);
  return WriteDecoded(piece);
}

Status UploadSession::WriteDecoded(std::string_view data) {
  if (multipart_) return multipart_->Feed(data);
  return pending_->Write(data);
}

Status UploadSession::OnPartBegin(const http::MultipartPart& part) {
  if (part.name != "file") return Status();  // other form fields are ignored
  std::string_view destination;
  if (!path_.empty()) {
    destination = path_;
  } else if (part.filename && !part.filename->empty()) {
    destination = *part.filename;
  } else {
    return Fail(Errc::kInvalidArgument,
                "a file part has no filename and no path query parameter was given");
  }
  return BeginFile(destination);
}

Status UploadSession::OnPartData(std::string_view data) {
  if (!pending_) return Status();
  return pending_->Write(data);
}

Status UploadSession::OnPartEnd() { return CommitFile(); }

Result<nlohmann::json> UploadSession::Finish() {
  if (gzip_) KILN_TRY(gzip_->Finish());
  if (multipart_) {
    KILN_TRY(multipart_->Finish());
    if (committed_.empty()) {
      return Fail(Errc::kInvalidArgument, "the multipart body has no part named 'file'");
    }
  }
  KILN_TRY(CommitFile());
  nlohmann::json out = nlohmann::json::array();
  for (const std::string& path : committed_) out.push_back(UploadJson(path, metadata_));
  return out;
}

}  // namespace kiln::envd
