#include "sys/dir_list.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace kiln::sys {

Result<std::vector<std::string>> ListDirNames(int dirfd, std::string_view what) {
  std::string name(what);
  int dup_fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return FailErrno("dup " + name);
  DIR* dir = fdopendir(dup_fd);
  if (dir == nullptr) {
    int err = errno;
    close(dup_fd);
    return FailErrno("opendir " + name, err);
  }
  // The duplicate shares dirfd's file offset: list from the start whatever it was.
  rewinddir(dir);
  std::vector<std::string> names;
  errno = 0;
  while (dirent* e = readdir(dir)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  int err = errno;
  closedir(dir);
  if (err != 0) return FailErrno("readdir " + name, err);
  return names;
}

}  // namespace kiln::sys
