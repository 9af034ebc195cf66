#include "kilnd/runtime/vm/disk_image.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "base/scope_exit.h"
#include "base/unique_fd.h"
#include "kilnd/runtime/vm/child_process.h"

namespace kiln::kilnd::vm {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kKiB = 1024, kMiB = 1024 * kKiB, kGiB = 1024 * kMiB;
constexpr uint64_t kBlock = 4096;
constexpr std::chrono::seconds kMke2fsTimeout{30 * 60};

uint64_t RoundUp(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

std::string TmpPath(const fs::path& out) { return out.string() + ".tmp"; }

// Walks a tree without following symlinks or leaving its filesystem.
class TreeWalker {
 public:
  explicit TreeWalker(dev_t dev) : dev_(dev) {}

  Status Walk(int dirfd, const std::string& where) {
    DIR* dir = fdopendir(dirfd);
    if (dir == nullptr) {
      int err = errno;
      close(dirfd);
      return FailErrno("opendir " + where, err);
    }
    ScopeExit closer([dir] { closedir(dir); });
    for (;;) {
      errno = 0;
      dirent* e = readdir(dir);
      if (e == nullptr) {
        if (errno != 0) return FailErrno("readdir " + where);
        return {};
      }
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      struct stat st {};
      std::string path = where + "/" + e->d_name;
      if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        return FailErrno("stat " + path);
      }
      Count(st);
      if (S_ISDIR(st.st_mode) && st.st_dev == dev_) {
        int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) return FailErrno("open " + path);
        KILN_TRY(Walk(sub, path));
      }
    }
  }

  void Count(const struct stat& st) {
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1 &&
        !hard_links_.insert({st.st_dev, st.st_ino}).second) {
      return;  // another name of an inode already counted
    }
    ++usage.inodes;
    if (S_ISREG(st.st_mode)) {
      usage.bytes += RoundUp(static_cast<uint64_t>(st.st_blocks) * 512, kBlock);
    } else if (S_ISDIR(st.st_mode)) {
      usage.bytes += RoundUp(std::max<uint64_t>(static_cast<uint64_t>(st.st_size), 1), kBlock);
    } else if (S_ISLNK(st.st_mode) && st.st_size >= 60) {
      usage.bytes += kBlock;  // shorter targets live in the inode
    }
  }

  TreeUsage usage;

 private:
  dev_t dev_;
  std::set<std::pair<dev_t, ino_t>> hard_links_;
};

// e2fsprogs' default journal size for a filesystem of `blocks` 4 KiB blocks.
uint64_t JournalBytes(uint64_t blocks) {
  uint64_t jblocks = blocks < 2048           ? 0
                     : blocks < 32768        ? 1024
                     : blocks < 256 * 1024   ? 4096
                     : blocks < 512 * 1024   ? 8192
                     : blocks < 4096 * 1024  ? 16384
                     : blocks < 8192 * 1024  ? 32768
                     : blocks < 16384 * 1024 ? 65536
                     : blocks < 32768 * 1024 ? 131072
                                             : 262144;
  return jblocks * kBlock;
}

// A sparse file of `size` bytes for mke2fs to fill (mke2fs would otherwise create it 0666
// minus umask).
Status CreateSparse(const std::string& path, uint64_t size) {
  (void)unlink(path.c_str());
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return FailErrno("create " + path);
  if (ftruncate(fd.get(), static_cast<off_t>(size)) < 0) return FailErrno("truncate " + path);
  return {};
}

// mke2fs -d `tree` into <out>.tmp, then the rename. `extra` goes before the image argument.
Status MakeExt4(const fs::path& tree, const fs::path& out, uint64_t size,
                const std::vector<std::string>& extra) {
  KILN_ASSIGN_OR_RETURN(std::string mke2fs, FindTool("mke2fs"));
  std::string tmp = TmpPath(out);
  KILN_TRY(CreateSparse(tmp, size));
  ScopeExit remove_tmp([&tmp] { (void)unlink(tmp.c_str()); });
  // 4 KiB blocks and 256-byte inodes whatever the size (mke2fs's "small" type would pick
  // 1 KiB blocks and 128-byte inodes, which lack room for nanosecond timestamps). The file is
  // a fresh sparse one, so its journal reads as zeros without being written
  // (lazy_journal_init); the inode tables are marked zeroed too (ITABLE_ZEROED), so the
  // guest runs no ext4lazyinit.
  std::vector<std::string> argv = {mke2fs,
                                   "-q",
                                   "-F",
                                   "-t",
                                   "ext4",
                                   "-b",
                                   "4096",
                                   "-I",
                                   "256",
                                   "-m",
                                   "0",
                                   "-E",
                                   "root_owner=0:0,lazy_journal_init=1"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.insert(argv.end(), {"-d", tree.string(), tmp, std::to_string(size / kKiB) + "k"});
  auto ran = RunTool(argv, "", kMke2fsTimeout);
  if (!ran) return Fail(ran.error().code(), "make " + out.string() + ": " + ran.error().message());
  if (rename(tmp.c_str(), out.c_str()) < 0)
    return FailErrno("rename " + tmp + " to " + out.string());
  remove_tmp.Dismiss();
  return {};
}

void PutBe(std::string& buf, size_t offset, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    buf[offset + static_cast<size_t>(i)] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
}

Result<uint64_t> VirtualSize(const fs::path& backing, const std::string& format) {
  UniqueFd fd(open(backing.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + backing.string());
  if (format == "raw") {
    struct stat st {};
    if (fstat(fd.get(), &st) < 0) return FailErrno("stat " + backing.string());
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
      return Fail(Errc::kInvalidArgument, backing.string() + " is not a file");
    }
    return static_cast<uint64_t>(st.st_size);
  }
  if (format == "qcow2") {
    unsigned char h[32];
    ssize_t n = pread(fd.get(), h, sizeof h, 0);
    if (n < 0) return FailErrno("read " + backing.string());
    if (n != sizeof h || std::memcmp(h, "QFI\xfb", 4) != 0) {
      return Fail(Errc::kInvalidArgument, backing.string() + " is not a qcow2 image");
    }
    uint64_t size = 0;
    for (int i = 24; i < 32; ++i) size = size << 8 | h[i];
    return size;
  }
  return Fail(Errc::kInvalidArgument, "backing format must be raw or qcow2, not " + format);
}

Status WriteAt(int fd, const std::string& data, uint64_t offset, const std::string& path) {
  ssize_t n = pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
  if (n < 0) return FailErrno("write " + path);
  if (static_cast<size_t>(n) != data.size()) return Fail(Errc::kInternal, "short write to " + path);
  return {};
}

}  // namespace

Result<TreeUsage> MeasureTree(const fs::path& rootfs) {
  struct stat st {};
  if (lstat(rootfs.c_str(), &st) < 0) return FailErrno("stat " + rootfs.string());
  if (!S_ISDIR(st.st_mode))
    return Fail(Errc::kInvalidArgument, rootfs.string() + " is not a directory");
  TreeWalker walker(st.st_dev);
  walker.Count(st);
  int fd = open(rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return FailErrno("open " + rootfs.string());
  KILN_TRY(walker.Walk(fd, rootfs.string()));
  return walker.usage;
}

Status BuildTemplateImage(const fs::path& rootfs, const fs::path& out,
                          const TemplateImageOptions& options) {
  if (options.label.size() > 16) {
    return Fail(Errc::kInvalidArgument, "ext4 label longer than 16 bytes: " + options.label);
  }
  KILN_ASSIGN_OR_RETURN(TreeUsage usage, MeasureTree(rootfs));
  uint64_t inodes = usage.inodes + usage.inodes / 4 + options.extra_bytes / (16 * kKiB) + 256;
  // Data with 15 % for extent blocks and directory growth, the inode tables, a fixed 16 MiB
  // for bitmaps, group descriptors and the blocks reserved for growth, and the journal.
  uint64_t size =
      usage.bytes + usage.bytes * 15 / 100 + inodes * 256 + 16 * kMiB + options.extra_bytes;
  size += JournalBytes(size / kBlock);
  size = RoundUp(size, kMiB);
  return MakeExt4(rootfs, out, size, {"-N", std::to_string(inodes), "-L", options.label});
}

Status BuildAgentImage(const std::vector<AgentFile>& files, const fs::path& out) {
  fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  std::string staging = (parent / ".agent-staging-XXXXXX").string();
  if (mkdtemp(staging.data()) == nullptr) return FailErrno("mkdtemp " + staging);
  ScopeExit remove_staging([&staging] {
    std::error_code ec;
    fs::remove_all(staging, ec);
  });
  if (chmod(staging.c_str(), 0755) < 0) return FailErrno("chmod " + staging);
  uint64_t bytes = 0;
  for (const AgentFile& f : files) {
    if (f.name.empty() || f.name == "." || f.name == ".." ||
        f.name.find('/') != std::string::npos) {
      return Fail(Errc::kInvalidArgument, "agent image: bad file name '" + f.name + "'");
    }
    fs::path dest = fs::path(staging) / f.name;
    std::error_code ec;
    if (!fs::copy_file(f.source, dest, fs::copy_options::none, ec)) {
      return Fail(Errc::kInternal, "copy " + f.source.string() + " to " + dest.string() + ": " +
                                       (ec ? ec.message() : std::string("not copied")));
    }
    if (chmod(dest.c_str(), f.mode & 07777) < 0) return FailErrno("chmod " + dest.string());
    struct stat st {};
    if (stat(dest.c_str(), &st) < 0) return FailErrno("stat " + dest.string());
    bytes += RoundUp(static_cast<uint64_t>(st.st_size), kBlock);
  }
  // Read-only at /.kiln: no journal, no inode room beyond mke2fs's default ratio.
  uint64_t size = RoundUp(bytes + bytes / 10 + 4 * kMiB, kMiB);
  return MakeExt4(staging, out, size, {"-O", "^has_journal", "-L", "kiln-agent"});
}

Status CreateOverlay(const fs::path& backing, const std::string& backing_format,
                     const fs::path& out) {
  constexpr uint64_t kClusterBits = 16, kCluster = uint64_t{1} << kClusterBits;
  // One L2 table maps cluster_size / 8 clusters (512 MiB); one cluster of L1 holds 8192
  // entries (4 TiB), which is as large as this writer goes.
  constexpr uint64_t kPerL2 = kCluster * (kCluster / 8);
  std::error_code ec;
  fs::path abs = fs::absolute(backing, ec);
  if (ec) return Fail(Errc::kInvalidArgument, "absolute path of " + backing.string());
  std::string name = abs.lexically_normal().string();
  if (name.size() > 1023) return Fail(Errc::kInvalidArgument, "backing file name too long");
  KILN_ASSIGN_OR_RETURN(uint64_t size, VirtualSize(abs, backing_format));
  if (size == 0 || size % 512 != 0) {
    return Fail(Errc::kInvalidArgument,
                backing.string() + ": size " + std::to_string(size) + " is not a multiple of 512");
  }
  uint64_t l1_entries = (size + kPerL2 - 1) / kPerL2;
  if (l1_entries > kCluster / 8) return Fail(Errc::kInvalidArgument, "backing image over 4 TiB");

  // Cluster 0: header (112 bytes), extensions, backing file name. Cluster 1: refcount table.
  // Cluster 2: refcount block. Cluster 3: L1 table (all zero: nothing allocated yet).
  constexpr uint64_t kHeaderLength = 112;
  constexpr uint64_t kRefTable = 1 * kCluster, kRefBlock = 2 * kCluster, kL1 = 3 * kCluster;
  std::string fmt_ext(8 + RoundUp(backing_format.size(), 8), '\0');
  PutBe(fmt_ext, 0, 0xe2792aca, 4);  // backing file format name
  PutBe(fmt_ext, 4, backing_format.size(), 4);
  std::memcpy(fmt_ext.data() + 8, backing_format.data(), backing_format.size());
  const uint64_t name_offset = kHeaderLength + fmt_ext.size() + 8;  // + end-of-extensions

  std::string head(name_offset + name.size(), '\0');
  std::memcpy(head.data(), "QFI\xfb", 4);
  PutBe(head, 4, 3, 4);              // version
  PutBe(head, 8, name_offset, 8);    // backing_file_offset
  PutBe(head, 16, name.size(), 4);   // backing_file_size
  PutBe(head, 20, kClusterBits, 4);  // cluster_bits
  PutBe(head, 24, size, 8);          // size
  PutBe(head, 32, 0, 4);             // crypt_method
  PutBe(head, 36, l1_entries, 4);    // l1_size
  PutBe(head, 40, kL1, 8);           // l1_table_offset
  PutBe(head, 48, kRefTable, 8);     // refcount_table_offset
  PutBe(head, 56, 1, 4);             // refcount_table_clusters
  PutBe(head, 60, 0, 4);             // nb_snapshots
  PutBe(head, 64, 0, 8);             // snapshots_offset
  // 72 incompatible, 80 compatible, 88 autoclear features: none.
  PutBe(head, 96, 4, 4);               // refcount_order: 16-bit refcounts
  PutBe(head, 100, kHeaderLength, 4);  // header_length
  // 104: compression_type zlib (0), then padding to 112.
  std::memcpy(head.data() + kHeaderLength, fmt_ext.data(), fmt_ext.size());
  // End of extensions: type 0, length 0 (already zero).
  std::memcpy(head.data() + name_offset, name.data(), name.size());

  std::string reftable(8, '\0');
  PutBe(reftable, 0, kRefBlock, 8);
  std::string refblock(8, '\0');  // clusters 0..3 are in use once each
  for (size_t i = 0; i < 4; ++i) PutBe(refblock, i * 2, 1, 2);

  std::string tmp = TmpPath(out);
  (void)unlink(tmp.c_str());
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return FailErrno("create " + tmp);
  ScopeExit remove_tmp([&tmp] { (void)unlink(tmp.c_str()); });
  KILN_TRY(WriteAt(fd.get(), head, 0, tmp));
  KILN_TRY(WriteAt(fd.get(), reftable, kRefTable, tmp));
  KILN_TRY(WriteAt(fd.get(), refblock, kRefBlock, tmp));
  if (ftruncate(fd.get(), static_cast<off_t>(kL1 + l1_entries * 8)) < 0) {
    return FailErrno("truncate " + tmp);
  }
  fd.reset();
  if (rename(tmp.c_str(), out.c_str()) < 0)
    return FailErrno("rename " + tmp + " to " + out.string());
  remove_tmp.Dismiss();
  return {};
}

}  // namespace kiln::kilnd::vm
