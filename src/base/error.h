#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace kiln {

// What kind of failure an Error is. Each layer maps it to its own wire form
// (HTTP status, Connect code) in exactly one place.
enum class Errc {
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kUnauthenticated,
  kResourceExhausted,
  kFailedPrecondition,
  kUnavailable,
  kTimeout,
  kCanceled,
  kUnimplemented,
  kInternal,
};

std::string_view ErrcName(Errc code);

// A failure with a category, the errno that caused it (0 if none) and a message that
// gathers context on the way up: "stat /a: No such file or directory".
class [[nodiscard]] Error {
 public:
  Error(Errc code, std::string message, int sys_errno = 0)
      : code_(code), errno_(sys_errno), message_(std::move(message)) {}

  // Maps errno to an Errc (ENOENT -> kNotFound, EACCES/EPERM -> kPermissionDenied, ...)
  // and appends strerror to `what`.
  static Error FromErrno(int err, std::string_view what);

  Errc code() const { return code_; }
  int sys_errno() const { return errno_; }
  const std::string& message() const { return message_; }

  // Prefixes the message with "context: ".
  Error Wrap(std::string_view context) &&;

 private:
  Errc code_;
  int errno_;
  std::string message_;
};

template <typename T>
using Result = std::expected<T, Error>;
using Status = Result<void>;

inline std::unexpected<Error> Unexpected(Error e) { return std::unexpected<Error>(std::move(e)); }
inline std::unexpected<Error> Fail(Errc code, std::string message) {
  return std::unexpected<Error>(Error(code, std::move(message)));
}
inline std::unexpected<Error> FailErrno(std::string_view what, int err = errno) {
  return std::unexpected<Error>(Error::FromErrno(err, what));
}

}  // namespace kiln

#define KILN_CONCAT_INNER(a, b) a##b
#define KILN_CONCAT(a, b) KILN_CONCAT_INNER(a, b)

// Returns the error of `expr` (a Result or Status) from the enclosing function.
#define KILN_TRY(expr)                                                 \
  do {                                                                 \
    auto&& kiln_try_result = (expr);                                   \
    if (!kiln_try_result) {                                            \
      return std::unexpected(std::move(kiln_try_result).error());      \
    }                                                                  \
  } while (0)

#define KILN_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)    \
  auto tmp = (expr);                                  \
  if (!tmp) {                                         \
    return std::unexpected(std::move(tmp).error());   \
  }                                                   \
  lhs = std::move(*tmp)

// `lhs` = value of `expr`, or returns its error from the enclosing function.
#define KILN_ASSIGN_OR_RETURN(lhs, expr) \
  KILN_ASSIGN_OR_RETURN_IMPL(KILN_CONCAT(kiln_aor_, __LINE__), lhs, expr)

// KILN_TRY and KILN_ASSIGN_OR_RETURN for coroutines (co_return instead of return).
#define KILN_CO_TRY(expr)                                              \
  do {                                                                 \
    auto&& kiln_try_result = (expr);                                   \
    if (!kiln_try_result) {                                            \
      co_return std::unexpected(std::move(kiln_try_result).error());   \
    }                                                                  \
  } while (0)

#define KILN_CO_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)  \
  auto tmp = (expr);                                   \
  if (!tmp) {                                          \
    co_return std::unexpected(std::move(tmp).error()); \
  }                                                    \
  lhs = std::move(*tmp)

#define KILN_CO_ASSIGN_OR_RETURN(lhs, expr) \
  KILN_CO_ASSIGN_OR_RETURN_IMPL(KILN_CONCAT(kiln_coar_, __LINE__), lhs, expr)
