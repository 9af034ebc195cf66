#include "sys/tree_copy.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string_view>
#include <utility>

#include "base/unique_fd.h"
#include "sys/dir_list.h"

namespace kiln::sys {
namespace {

bool CopiedXattr(std::string_view name) {
  if (name.starts_with("user.overlay.") || name.starts_with("trusted.overlay.")) {
    // Only what changes what the merged tree shows. origin/impure/redirect refer to the old
    // lower layer's inodes and are rebuilt by overlayfs.
    return name.ends_with(".opaque") || name.ends_with(".whiteout");
  }
  return name.starts_with("user.") || name == "security.capability";
}

class Copier {
 public:
  Copier(int dst_root, const TreeCopyOptions& options) : dst_root_(dst_root), options_(options) {}

  Status CopyDirContents(int src, int dst, const std::string& rel, int depth) {
    if (depth > options_.max_depth) {
      return Fail(Errc::kResourceExhausted, "copy " + rel + ": directory tree too deep");
    }
    auto listed = sys::ListDirNames(src, Show(rel));
    if (!listed) return Unexpected(std::move(listed).error().Wrap("copy"));
    std::vector<std::string> names = std::move(*listed);
    if (depth == 0) {
      std::erase_if(names, [&](const std::string& n) {
        return std::find(options_.skip_top_level.begin(), options_.skip_top_level.end(), n) !=
               options_.skip_top_level.end();
      });
    }
    for (const auto& name : names) {
      KILN_TRY(CopyEntry(src, dst, name, rel.empty() ? name : rel + "/" + name, depth));
    }
    return {};
  }

  // Owner, xattrs, mode and times of an open destination `dst_fd` from `st` / `src_fd`.
  Status CopyAttributes(int src_fd, int dst_fd, const struct stat& st, const std::string& rel) {
    if (fchown(dst_fd, st.st_uid, st.st_gid) < 0) return FailErrno("copy " + Show(rel) + ": chown");
    KILN_TRY(CopyXattrs(src_fd, dst_fd, rel));
    if (fchmod(dst_fd, st.st_mode & 07777) < 0) return FailErrno("copy " + Show(rel) + ": chmod");
    timespec times[2] = {st.st_atim, st.st_mtim};
    if (futimens(dst_fd, times) < 0) return FailErrno("copy " + Show(rel) + ": set times");
    return {};
  }

 private:
  static std::string Show(const std::string& rel) { return rel.empty() ? "." : rel; }

  Status CopyEntry(int src, int dst, const std::string& name, const std::string& rel,
                   int depth) {
    struct stat st{};
    if (fstatat(src, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) return {};  // removed while we copy
      return FailErrno("copy " + rel + ": stat");
    }
    switch (st.st_mode & S_IFMT) {
      case S_IFDIR: return CopyDir(src, dst, name, rel, st, depth);
      case S_IFREG: return CopyFile(src, dst, name, rel, st);
      case S_IFLNK: return CopySymlink(src, dst, name, rel, st);
      case S_IFIFO: return CopyNode(dst, name, rel, st, S_IFIFO, 0);
      case S_IFCHR:
        // overlayfs whiteout: a character device 0/0. Nothing else is ever recreated.
        if (st.st_rdev == makedev(0, 0)) return CopyNode(dst, name, rel, st, S_IFCHR, 0);
        return {};
      default: return {};  // sockets, other devices
    }
  }

  Status CopyDir(int src, int dst, const std::string& name, const std::string& rel,
                 const struct stat& st, int depth) {
    if (mkdirat(dst, name.c_str(), 0700) < 0 && errno != EEXIST) {
      return FailErrno("copy " + rel + ": mkdir");
    }
    UniqueFd s(openat(src, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!s) return FailErrno("copy " + rel + ": open");
    UniqueFd d(openat(dst, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!d) return FailErrno("copy " + rel + ": open destination");
    KILN_TRY(CopyDirContents(s.get(), d.get(), rel, depth + 1));
    return CopyAttributes(s.get(), d.get(), st, rel);  // after the entries: keeps the mtime
  }

  Status CopyFile(int src, int dst, const std::string& name, const std::string& rel,
                  const struct stat& st) {
    if (st.st_nlink > 1) {
      auto key = std::make_pair(st.st_dev, st.st_ino);
      auto it = links_.find(key);
      if (it != links_.end()) {
        if (linkat(dst_root_, it->second.c_str(), dst, name.c_str(), 0) < 0) {
          return FailErrno("copy " + rel + ": link to " + it->second);
        }
        return {};
      }
      links_.emplace(key, rel);
    }
    UniqueFd s(openat(src, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY));
    if (!s) return FailErrno("copy " + rel + ": open");
    UniqueFd d(openat(dst, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      0600));
    if (!d) return FailErrno("copy " + rel + ": create");
    KILN_TRY(CopyData(s.get(), d.get(), rel));
    return CopyAttributes(s.get(), d.get(), st, rel);
  }

  Status CopyData(int s, int d, const std::string& rel) {
    bool use_cfr = true;
    char buf[128 * 1024];
    for (;;) {
      if (use_cfr) {
        ssize_t n = copy_file_range(s, nullptr, d, nullptr, 1 << 30, 0);
        if (n > 0) continue;
        if (n == 0) return {};
        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
          return FailErrno("copy " + rel);
        }
        use_cfr = false;  // different file systems: plain read/write from the same offsets
      }
      ssize_t n = read(s, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        return FailErrno("copy " + rel + ": read");
      }
      if (n == 0) return {};
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(d, buf + off, static_cast<size_t>(n - off));
        if (w < 0) {
          if (errno == EINTR) continue;
          return FailErrno("copy " + rel + ": write");
        }
        off += w;
      }
    }
  }

  Status CopySymlink(int src, int dst, const std::string& name, const std::string& rel,
                     const struct stat& st) {
    char target[PATH_MAX + 1];
    ssize_t n = readlinkat(src, name.c_str(), target, PATH_MAX);
    if (n < 0) return FailErrno("copy " + rel + ": readlink");
    target[n] = '\0';
    if (symlinkat(target, dst, name.c_str()) < 0) return FailErrno("copy " + rel + ": symlink");
    if (fchownat(dst, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0) {
      return FailErrno("copy " + rel + ": chown");
    }
    timespec times[2] = {st.st_atim, st.st_mtim};
    if (utimensat(dst, name.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0) {
      return FailErrno("copy " + rel + ": set times");
    }
    return {};
  }

  Status CopyNode(int dst, const std::string& name, const std::string& rel,
                  const struct stat& st, mode_t type, dev_t dev) {
    if (mknodat(dst, name.c_str(), type | 0600, dev) < 0) return FailErrno("copy " + rel + ": mknod");
    // O_PATH fds take fchownat/utimensat via AT_EMPTY_PATH; opening a FIFO for real would block.
    UniqueFd d(openat(dst, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!d) return FailErrno("copy " + rel + ": open");
    if (fchownat(d.get(), "", st.st_uid, st.st_gid, AT_EMPTY_PATH) < 0) {
      return FailErrno("copy " + rel + ": chown");
    }
    if (fchmodat(dst, name.c_str(), st.st_mode & 07777, 0) < 0) {
      return FailErrno("copy " + rel + ": chmod");
    }
    timespec times[2] = {st.st_atim, st.st_mtim};
    if (utimensat(dst, name.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0) {
      return FailErrno("copy " + rel + ": set times");
    }
    return {};
  }

  Status CopyXattrs(int s, int d, const std::string& rel) {
    char names[16384];
    ssize_t len = flistxattr(s, names, sizeof names);
    if (len < 0) {
      if (errno == ENOTSUP) return {};
      return FailErrno("copy " + Show(rel) + ": list xattrs");
    }
    std::vector<char> value(65536);
    for (ssize_t off = 0; off < len;) {
      std::string_view name(names + off);
      off += static_cast<ssize_t>(name.size()) + 1;
      if (!CopiedXattr(name)) continue;
      std::string n(name);
      ssize_t vlen = fgetxattr(s, n.c_str(), value.data(), value.size());
      if (vlen < 0) {
        if (errno == ENODATA) continue;
        return FailErrno("copy " + Show(rel) + ": get xattr " + n);
      }
      if (fsetxattr(d, n.c_str(), value.data(), static_cast<size_t>(vlen), 0) < 0) {
        return FailErrno("copy " + Show(rel) + ": set xattr " + n);
      }
    }
    return {};
  }

  int dst_root_;
  const TreeCopyOptions& options_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

}  // namespace

Status CopyTree(int src_dir, int dst_dir, const TreeCopyOptions& options) {
  struct stat st{};
  if (fstat(src_dir, &st) < 0) return FailErrno("copy: stat source");
  Copier copier(dst_dir, options);
  KILN_TRY(copier.CopyDirContents(src_dir, dst_dir, "", 0));
  return copier.CopyAttributes(src_dir, dst_dir, st, "");
}

}  // namespace kiln::sys
