#pragma once

// The operands of `kiln sandbox cp` and the multipart framing of uploads.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln::cli {

// One side of a copy: a local path ("-" is stdin/stdout) or "ID:PATH" in a sandbox.
struct CopyOperand {
  bool remote = false;
  std::string sandbox_id;  // remote only
  std::string path;
};

// "ID:PATH" is remote when ID is a sandbox id ([a-z0-9]+); anything starting with '/' or '.',
// or without such a prefix, is local. kInvalidArgument for "ID:" without a path or an empty
// operand.
Result<CopyOperand> ParseCopyOperand(std::string_view arg);

// The last path component of `path` ("" for "/" or "dir/").
std::string BaseName(std::string_view path);

// The parts of a multipart/form-data body with one field "file" around the content.
struct MultipartFraming {
  std::string boundary;
  std::string content_type;  // header value, with the boundary
  std::string head;          // boundary line and part headers
  std::string tail;          // CRLF and closing boundary
};
// `filename` goes into Content-Disposition (quotes and line breaks replaced).
MultipartFraming MakeMultipartFraming(std::string_view boundary, std::string_view filename);
// "kiln-" + 32 random hex characters.
std::string RandomBoundary();

}  // namespace kiln::cli
