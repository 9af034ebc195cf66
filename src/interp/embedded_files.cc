#include "interp/embedded_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/unique_fd.h"

namespace kiln::interp {

Status WritePythonFiles(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Fail(Errc::kInternal, "create " + dir.string() + ": " + ec.message());
  if (chmod(dir.c_str(), 0755) < 0) return FailErrno("chmod " + dir.string());
  for (const EmbeddedFile& f : PythonFiles()) {
    std::filesystem::path tmp = dir / ("." + std::string(f.name) + ".tmp");
    std::filesystem::path final = dir / std::string(f.name);
    UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd) return FailErrno("create " + tmp.string());
    std::string_view rest = f.content;
    while (!rest.empty()) {
      ssize_t n = write(fd.get(), rest.data(), rest.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return FailErrno("write " + tmp.string());
      rest.remove_prefix(static_cast<size_t>(n));
    }
    if (fchmod(fd.get(), 0644) < 0) return FailErrno("chmod " + tmp.string());
    if (rename(tmp.c_str(), final.c_str()) < 0) return FailErrno("rename " + final.string());
  }
  return {};
}

}  // namespace kiln::interp
