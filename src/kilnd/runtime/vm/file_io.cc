#include "kilnd/runtime/vm/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/unique_fd.h"

namespace kiln::kilnd::vm {

Result<std::string> ReadWholeFile(const std::filesystem::path& path, size_t max_size) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + path.string());
  struct stat st {};
  if (fstat(fd.get(), &st) < 0) return FailErrno("stat " + path.string());
  if (static_cast<uint64_t>(st.st_size) > max_size) {
    return Fail(Errc::kResourceExhausted,
                path.string() + " is larger than " + std::to_string(max_size) + " bytes");
  }
  // st_size is 0 for /proc files: read until EOF.
  std::string data;
  data.resize(std::max<size_t>(static_cast<size_t>(st.st_size) + 1, 4096));
  size_t done = 0;
  for (;;) {
    if (done == data.size()) {
      if (data.size() > max_size) {
        return Fail(Errc::kResourceExhausted,
                    path.string() + " is larger than " + std::to_string(max_size) + " bytes");
      }
      data.resize(data.size() * 2);
    }
    ssize_t n = read(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("read " + path.string());
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  if (done > max_size) {
    return Fail(Errc::kResourceExhausted,
                path.string() + " is larger than " + std::to_string(max_size) + " bytes");
  }
  data.resize(done);
  return data;
}

Status WriteWholeFile(const std::filesystem::path& path, std::string_view data, mode_t mode) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return FailErrno("create " + path.string());
  while (!data.empty()) {
    ssize_t n = write(fd.get(), data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("write " + path.string());
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (fchmod(fd.get(), mode) < 0) return FailErrno("chmod " + path.string());
  if (fsync(fd.get()) < 0) return FailErrno("fsync " + path.string());
  return {};
}

Status ReplaceFile(const std::filesystem::path& path, std::string_view data, mode_t mode) {
  std::filesystem::path tmp = path;
  tmp += ".tmp-" + std::to_string(getpid());
  if (Status st = WriteWholeFile(tmp, data, mode); !st) {
    unlink(tmp.c_str());
    return st;
  }
  if (rename(tmp.c_str(), path.c_str()) < 0) {
    int err = errno;
    unlink(tmp.c_str());
    return FailErrno("rename " + tmp.string() + " to " + path.string(), err);
  }
  return {};
}

}  // namespace kiln::kilnd::vm
