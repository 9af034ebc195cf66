#include "base/error.h"

#include <cstring>

namespace kiln {

std::string_view ErrcName(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument: return "invalid argument";
    case Errc::kNotFound: return "not found";
    case Errc::kAlreadyExists: return "already exists";
    case Errc::kPermissionDenied: return "permission denied";
    case Errc::kUnauthenticated: return "unauthenticated";
    case Errc::kResourceExhausted: return "resource exhausted";
    case Errc::kFailedPrecondition: return "failed precondition";
    case Errc::kUnavailable: return "unavailable";
    case Errc::kTimeout: return "timeout";
    case Errc::kCanceled: return "canceled";
    case Errc::kUnimplemented: return "unimplemented";
    case Errc::kInternal: return "internal";
  }
  return "internal";
}

Error Error::FromErrno(int err, std::string_view what) {
  Errc code = Errc::kInternal;
  switch (err) {
    case ENOENT: case ENOTDIR: case ESRCH: code = Errc::kNotFound; break;
    case EEXIST: case ENOTEMPTY: code = Errc::kAlreadyExists; break;
    case EACCES: case EPERM: case EROFS: code = Errc::kPermissionDenied; break;
    case EINVAL: case ENAMETOOLONG: case EISDIR: case ELOOP: case EXDEV:
      code = Errc::kInvalidArgument; break;
    case ENOSPC: case EDQUOT: case EMFILE: case ENFILE: case ENOMEM: case EAGAIN:
      code = Errc::kResourceExhausted; break;
    case ETIMEDOUT: code = Errc::kTimeout; break;
    default: break;
  }
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  return Error(code, std::move(msg), err);
}

Error Error::Wrap(std::string_view context) && {
  std::string msg(context);
  msg += ": ";
  msg += message_;
  message_ = std::move(msg);
  return std::move(*this);
}

}  // namespace kiln
