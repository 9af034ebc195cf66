#include "kilnd/template/rootfs_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <vector>

#include "sys/dir_list.h"

namespace kiln::kilnd::tmpl {
namespace {

// Strips leading slashes: tree paths are relative to the tree's root either way.
std::string_view Relative(std::string_view rel) {
  while (rel.starts_with('/')) rel.remove_prefix(1);
  return rel.empty() ? std::string_view(".") : rel;
}

int OpenAt2(int dirfd, const char* path, uint64_t flags, uint64_t resolve) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = resolve;
  for (;;) {
    long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    // EAGAIN: a concurrent rename elsewhere in the filesystem made resolution unsafe.
    if (fd < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    return static_cast<int>(fd);
  }
}

Status WriteAll(int fd, std::string_view data, std::string_view what) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("write " + std::string(what));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Status CopyFd(int in, int out, std::string_view what) {
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("read " + std::string(what));
    if (n == 0) return {};
    KILN_TRY(WriteAll(out, std::string_view(buf.data(), static_cast<size_t>(n)), what));
  }
}

Status ApplyAttrs(int fd, const FileAttrs& attrs, std::string_view what) {
  if (fchown(fd, attrs.uid, attrs.gid) < 0) return FailErrno("chown " + std::string(what));
  // After chown, which clears set-id bits.
  if (fchmod(fd, attrs.mode) < 0) return FailErrno("chmod " + std::string(what));
  return {};
}

// Writes a new file next to `leaf` in `dir` and renames it over `leaf`; `fill` writes the
// content. The temp name is fixed: the tree has a single builder.
template <typename Fill>
Status ReplaceWith(int dir, const std::string& leaf, std::string_view rel, const FileAttrs& attrs,
                   Fill fill) {
  std::string tmp = ".kiln-new." + leaf;
  unlinkat(dir, tmp.c_str(), 0);  // a leftover of an interrupted write
  UniqueFd out(
      openat(dir, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) return FailErrno("create " + std::string(rel));
  Status st = fill(out.get());
  if (st) st = ApplyAttrs(out.get(), attrs, rel);
  if (st && renameat(dir, tmp.c_str(), dir, leaf.c_str()) < 0) {
    st = FailErrno("rename into " + std::string(rel));
  }
  if (!st) unlinkat(dir, tmp.c_str(), 0);
  return st;
}

Status CopyEntry(int src_dir, int dst_dir, const char* name, uid_t uid, gid_t gid,
                 const std::string& rel);

// Copies every entry of `src_dir` into `dst_dir`; `rel` names the source for messages.
Status CopyContents(int src_dir, int dst_dir, uid_t uid, gid_t gid, const std::string& rel) {
  // Names first: the directory stream is closed before recursing (bounded open fds).
  KILN_ASSIGN_OR_RETURN(std::vector<std::string> names, sys::ListDirNames(src_dir, rel));
  for (const std::string& name : names) {
    KILN_TRY(CopyEntry(src_dir, dst_dir, name.c_str(), uid, gid, rel + "/" + name));
  }
  return {};
}

Status CopyEntry(int src_dir, int dst_dir, const char* name, uid_t uid, gid_t gid,
                 const std::string& rel) {
  struct stat st;
  if (fstatat(src_dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return FailErrno("stat " + rel);
  FileAttrs attrs{static_cast<mode_t>(st.st_mode & 07777), uid, gid};
  if (S_ISDIR(st.st_mode)) {
    if (mkdirat(dst_dir, name, 0700) < 0) return FailErrno("mkdir copy of " + rel);
    UniqueFd src(openat(src_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    UniqueFd dst(openat(dst_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!src || !dst) return FailErrno("open " + rel);
    KILN_TRY(CopyContents(src.get(), dst.get(), uid, gid, rel));
    return ApplyAttrs(dst.get(), attrs, rel);
  }
  if (S_ISREG(st.st_mode)) {
    UniqueFd src(openat(src_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!src) return FailErrno("open " + rel);
    UniqueFd dst(openat(dst_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!dst) return FailErrno("create copy of " + rel);
    KILN_TRY(CopyFd(src.get(), dst.get(), rel));
    return ApplyAttrs(dst.get(), attrs, rel);
  }
  if (S_ISLNK(st.st_mode)) {
    std::string target(PATH_MAX, '\0');
    ssize_t n = readlinkat(src_dir, name, target.data(), target.size());
    if (n < 0) return FailErrno("readlink " + rel);
    target.resize(static_cast<size_t>(n));
    if (symlinkat(target.c_str(), dst_dir, name) < 0) return FailErrno("symlink copy of " + rel);
    if (fchownat(dst_dir, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
      return FailErrno("chown copy of " + rel);
    }
  }
  return {};  // devices, fifos and sockets have no place in a skeleton
}

}  // namespace

Result<RootfsTree> RootfsTree::Open(const std::filesystem::path& root) {
  UniqueFd fd(open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return FailErrno("open tree " + root.string());
  return RootfsTree(root, std::move(fd));
}

Result<UniqueFd> RootfsTree::Resolve(std::string_view rel, int flags) const {
  std::string p(Relative(rel));
  UniqueFd fd(OpenAt2(fd_.get(), p.c_str(), static_cast<uint64_t>(flags),
                      RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS));
  if (!fd) return FailErrno("open " + path_.string() + "/" + p);
  return fd;
}

Result<std::pair<UniqueFd, std::string>> RootfsTree::OpenParent(std::string_view rel) const {
  std::string_view r = Relative(rel);
  while (r.size() > 1 && r.back() == '/') r.remove_suffix(1);
  size_t slash = r.rfind('/');
  std::string leaf(slash == std::string_view::npos ? r : r.substr(slash + 1));
  if (leaf.empty() || leaf == "." || leaf == "..") {
    return Fail(Errc::kInvalidArgument, "tree path '" + std::string(rel) + "' names no file");
  }
  std::string_view parent = slash == std::string_view::npos ? "." : r.substr(0, slash);
  KILN_ASSIGN_OR_RETURN(UniqueFd dir, Resolve(parent, O_RDONLY | O_DIRECTORY));
  return std::pair<UniqueFd, std::string>(std::move(dir), std::move(leaf));
}

Result<std::string> RootfsTree::ReadFile(std::string_view rel) const {
  KILN_ASSIGN_OR_RETURN(UniqueFd fd, Resolve(rel, O_RDONLY));
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return FailErrno("stat " + std::string(rel));
  if (!S_ISREG(st.st_mode)) {
    return Fail(Errc::kInvalidArgument, std::string(rel) + " is not a regular file");
  }
  std::string out;
  char buf[1 << 14];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("read " + std::string(rel));
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

bool RootfsTree::Exists(std::string_view rel) const { return Resolve(rel, O_PATH).has_value(); }

Status RootfsTree::WriteFile(std::string_view rel, std::string_view content,
                             const FileAttrs& attrs) const {
  KILN_ASSIGN_OR_RETURN(auto parent, OpenParent(rel));
  return ReplaceWith(parent.first.get(), parent.second, rel, attrs,
                     [&](int fd) { return WriteAll(fd, content, rel); });
}

Status RootfsTree::ReplaceFile(std::string_view rel, std::string_view content) const {
  KILN_ASSIGN_OR_RETURN(auto parent, OpenParent(rel));
  struct stat st;
  if (fstatat(parent.first.get(), parent.second.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    return FailErrno("stat " + std::string(rel));
  }
  if (!S_ISREG(st.st_mode)) {
    return Fail(Errc::kInvalidArgument, std::string(rel) + " is not a regular file");
  }
  FileAttrs attrs{static_cast<mode_t>(st.st_mode & 07777), st.st_uid, st.st_gid};
  return ReplaceWith(parent.first.get(), parent.second, rel, attrs,
                     [&](int fd) { return WriteAll(fd, content, rel); });
}

Status RootfsTree::CopyFileIn(const std::filesystem::path& src, std::string_view rel,
                              const FileAttrs& attrs) const {
  UniqueFd in(open(src.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return FailErrno("open " + src.string());
  KILN_ASSIGN_OR_RETURN(auto parent, OpenParent(rel));
  return ReplaceWith(parent.first.get(), parent.second, rel, attrs,
                     [&](int fd) { return CopyFd(in.get(), fd, src.string()); });
}

Status RootfsTree::Symlink(std::string_view target, std::string_view rel, uid_t uid,
                           gid_t gid) const {
  KILN_ASSIGN_OR_RETURN(auto parent, OpenParent(rel));
  const int dir = parent.first.get();
  std::string tmp = ".kiln-new." + parent.second;
  unlinkat(dir, tmp.c_str(), 0);  // a leftover of an interrupted build
  if (symlinkat(std::string(target).c_str(), dir, tmp.c_str()) < 0) {
    return FailErrno("symlink " + std::string(rel));
  }
  Status st;
  if (fchownat(dir, tmp.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
    st = FailErrno("chown " + std::string(rel));
  } else if (renameat(dir, tmp.c_str(), dir, parent.second.c_str()) < 0) {
    st = FailErrno("rename into " + std::string(rel));
  }
  if (!st) unlinkat(dir, tmp.c_str(), 0);
  return st;
}

Status RootfsTree::MakeDirs(std::string_view rel, const FileAttrs& attrs) const {
  std::string_view r = Relative(rel);
  size_t pos = 0;
  while (pos < r.size()) {
    size_t slash = r.find('/', pos);
    if (slash == std::string_view::npos) slash = r.size();
    std::string_view prefix = r.substr(0, slash);
    pos = slash + 1;
    if (prefix.empty() || prefix.back() == '/' || prefix == ".") continue;
    auto existing = Resolve(prefix, O_PATH);
    if (existing) {
      struct stat st;
      if (fstat(existing->get(), &st) < 0) return FailErrno("stat " + std::string(prefix));
      if (!S_ISDIR(st.st_mode)) {
        return Fail(Errc::kInvalidArgument, std::string(prefix) + " is not a directory");
      }
      continue;
    }
    if (existing.error().code() != Errc::kNotFound) return Unexpected(std::move(existing).error());
    KILN_ASSIGN_OR_RETURN(auto parent, OpenParent(prefix));
    if (mkdirat(parent.first.get(), parent.second.c_str(), 0700) < 0) {
      return FailErrno("mkdir " + std::string(prefix));
    }
    KILN_ASSIGN_OR_RETURN(UniqueFd dir, Resolve(prefix, O_RDONLY | O_DIRECTORY));
    KILN_TRY(ApplyAttrs(dir.get(), attrs, prefix));
  }
  return {};
}

Result<UniqueFd> RootfsTree::OpenDir(std::string_view rel) const {
  return Resolve(rel, O_RDONLY | O_DIRECTORY);
}

Status RootfsTree::CopyDirContents(std::string_view src_rel, std::string_view dst_rel, uid_t uid,
                                   gid_t gid) const {
  KILN_ASSIGN_OR_RETURN(UniqueFd src, OpenDir(src_rel));
  KILN_ASSIGN_OR_RETURN(UniqueFd dst, OpenDir(dst_rel));
  return CopyContents(src.get(), dst.get(), uid, gid, std::string(Relative(src_rel)));
}

Result<int> RootfsTree::RemoveFiles(std::string_view dir_rel, std::string_view suffix) const {
  auto dir_fd = OpenDir(dir_rel);
  if (!dir_fd) {
    if (dir_fd.error().code() == Errc::kNotFound) return 0;
    return Unexpected(std::move(dir_fd).error());
  }
  KILN_ASSIGN_OR_RETURN(std::vector<std::string> names,
                        sys::ListDirNames(dir_fd->get(), std::string(dir_rel)));
  std::erase_if(names, [&](const std::string& n) { return !n.ends_with(suffix); });
  int removed = 0;
  for (const std::string& name : names) {
    struct stat st;
    if (fstatat(dir_fd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        !S_ISREG(st.st_mode)) {
      continue;
    }
    if (unlinkat(dir_fd->get(), name.c_str(), 0) < 0) {
      return FailErrno("remove " + std::string(dir_rel) + "/" + name);
    }
    ++removed;
  }
  return removed;
}

}  // namespace kiln::kilnd::tmpl
