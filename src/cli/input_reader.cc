#include "cli/input_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>

namespace kiln::cli {

namespace net = boost::asio;

InputReader::InputReader(int fd, int saved_flags,
                         std::optional<net::posix::stream_descriptor> descriptor)
    : fd_(fd), saved_flags_(saved_flags), descriptor_(std::move(descriptor)) {}

Result<std::unique_ptr<InputReader>> InputReader::Open(net::any_io_executor executor, int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return FailErrno("stdin: fcntl");
  struct stat st {};
  if (fstat(fd, &st) != 0) return FailErrno("stdin: fstat");
  std::optional<net::posix::stream_descriptor> descriptor;
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dup < 0) return FailErrno("stdin: dup");
    descriptor.emplace(executor, dup);  // owns the duplicate
  }
  return std::unique_ptr<InputReader>(new InputReader(fd, flags, std::move(descriptor)));
}

InputReader::~InputReader() {
  descriptor_.reset();
  // Put O_NONBLOCK back as it was: the description is shared with whoever gave us the fd.
  fcntl(fd_, F_SETFL, saved_flags_);
}

void InputReader::Cancel() {
  canceled_ = true;
  if (descriptor_) {
    boost::system::error_code ignored;
    descriptor_->cancel(ignored);
  }
}

http::Task<Result<std::string>> InputReader::Read(size_t max) {
  std::string buf(max, '\0');
  for (;;) {
    if (canceled_) co_return Fail(Errc::kCanceled, "input canceled");
    if (descriptor_) {
      boost::system::error_code ec;
      co_await descriptor_->async_wait(net::posix::descriptor_base::wait_read,
                                       net::redirect_error(net::use_awaitable, ec));
      if (canceled_ || ec == net::error::operation_aborted) {
        co_return Fail(Errc::kCanceled, "input canceled");
      }
      if (ec) co_return Fail(Errc::kUnavailable, "stdin: " + ec.message());
    }
    ssize_t n = ::read(descriptor_ ? descriptor_->native_handle() : fd_, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      // A terminal that went away (EIO after hangup) is the end of input.
      if (errno == EIO) co_return std::string();
      co_return FailErrno("read stdin");
    }
    buf.resize(static_cast<size_t>(n));
    co_return buf;
  }
}

bool IsDevNull(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode)) return false;
  return major(st.st_rdev) == 1 && minor(st.st_rdev) == 3;
}

}  // namespace kiln::cli
