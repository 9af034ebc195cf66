#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "envd/agent_state.h"
#include "envd/files/gzip_codec.h"
#include "envd/files/pending_file.h"
#include "http/multipart.h"
#include "http/server.h"

namespace kiln::envd {

// Turns one POST /files body into files. The route feeds it the body as it arrives; the
// session decodes it (Content-Encoding: gzip), splits it (multipart/form-data parts named
// "file", or a single application/octet-stream file) and streams each file into a
// PendingFile, which is put in place once all its bytes arrived: a multipart part when its
// closing delimiter is seen, an octet-stream body in Finish(). A file whose bytes did not
// all arrive never appears. Memory stays bounded whatever the body size.
// Lives on the agent's thread; not thread-safe; must not move once started (the parser and
// decoder point back into it).
class UploadSession : private http::MultipartSink {
 public:
  // SECURITY: everything in `head` comes from the client. Checks the content type and
  // encoding, the metadata headers and, for octet-stream, the destination (which it
  // creates). kInvalidArgument for anything malformed or unsupported.
  static Result<std::unique_ptr<UploadSession>> Start(const http::RequestHead& head,
                                                      const AgentState& state,
                                                      sys::UserInfo user);
  ~UploadSession() override;

  // The next piece of the raw body. Errors: kInvalidArgument for malformed bodies or bad
  // destinations, kResourceExhausted (errno ENOSPC/EDQUOT) when the disk is full, others
  // from the file system.
  Status Feed(std::string_view piece);
  // The body ended: commits what is still pending and returns the response array
  // [{"name","type":"file","path","metadata"?}], one element per file.
  Result<nlohmann::json> Finish();

 private:
  UploadSession(const AgentState& state, sys::UserInfo user, std::string path,
                std::map<std::string, std::string> metadata);

  Status WriteDecoded(std::string_view data);
  // Validates and resolves a destination and starts its PendingFile (pending_).
  Status BeginFile(std::string_view raw_path);
  Status CommitFile();

  Status OnPartBegin(const http::MultipartPart& part) override;
  Status OnPartData(std::string_view data) override;
  Status OnPartEnd() override;

  const AgentState& state_;
  sys::UserInfo user_;
  std::string path_;  // the `path` query parameter; empty when absent
  std::map<std::string, std::string> metadata_;
  std::unique_ptr<GzipDecoder> gzip_;
  std::unique_ptr<http::MultipartParser> multipart_;
  // The file being received, with its resolved destination as reported to the client.
  std::optional<PendingFile> pending_;
  std::string pending_path_;
  // Resolved destinations in request order; the committed ones are reported.
  std::vector<std::string> committed_;
  std::set<std::string> destinations_;
};

// SECURITY: a path from the client. kInvalidArgument for NUL bytes and over-long paths.
Status CheckClientPath(std::string_view raw);

}  // namespace kiln::envd
