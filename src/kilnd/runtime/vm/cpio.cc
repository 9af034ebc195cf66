#include "kilnd/runtime/vm/cpio.h"

#include <sys/stat.h>

#include <cstdio>

namespace kiln::kilnd::vm {
namespace {

void AppendHex(std::string& out, uint32_t value) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08X", value);
  out.append(buf, 8);
}

void PadTo4(std::string& out) { out.append((4 - out.size() % 4) % 4, '\0'); }

Status CheckPath(std::string_view path) {
  if (path.empty() || path.front() == '/' || path.back() == '/' ||
      path.find('\0') != std::string_view::npos || path.size() > 4000) {
    return Fail(Errc::kInvalidArgument, "bad cpio path '" + std::string(path) + "'");
  }
  return {};
}

}  // namespace

Status CpioWriter::Add(std::string_view path, uint32_t mode, std::string_view data, uint32_t rmajor,
                       uint32_t rminor) {
  KILN_TRY(CheckPath(path));
  if (data.size() > 0xFFFFFFFFu) return Fail(Errc::kInvalidArgument, "cpio entry too large");
  out_.append("070701");
  const uint32_t fields[13] = {
      next_ino_++,  // c_ino
      mode,         // c_mode
      0,
      0,                                   // c_uid, c_gid
      S_ISDIR(mode) ? 2u : 1u,             // c_nlink
      0,                                   // c_mtime
      static_cast<uint32_t>(data.size()),  // c_filesize
      0,
      0,  // c_maj, c_min (of the archive's device)
      rmajor,
      rminor,                                  // c_rmaj, c_rmin
      static_cast<uint32_t>(path.size() + 1),  // c_namesize, with the NUL
      0,                                       // c_chksum (newc: unused)
  };
  for (uint32_t f : fields) AppendHex(out_, f);
  out_.append(path);
  out_.push_back('\0');
  PadTo4(out_);
  out_.append(data);
  PadTo4(out_);
  return {};
}

Status CpioWriter::AddDirectory(std::string_view path, mode_t mode) {
  return Add(path, S_IFDIR | (mode & 07777), {}, 0, 0);
}

Status CpioWriter::AddFile(std::string_view path, mode_t mode, std::string_view data) {
  return Add(path, S_IFREG | (mode & 07777), data, 0, 0);
}

Status CpioWriter::AddSymlink(std::string_view path, std::string_view target) {
  if (target.empty()) return Fail(Errc::kInvalidArgument, "empty symlink target");
  return Add(path, S_IFLNK | 0777, target, 0, 0);
}

Status CpioWriter::AddCharDevice(std::string_view path, mode_t mode, uint32_t major,
                                 uint32_t minor) {
  return Add(path, S_IFCHR | (mode & 07777), {}, major, minor);
}

std::string CpioWriter::Finish() {
  next_ino_ = 0;  // the trailer's inode number is 0 by convention
  (void)Add("TRAILER!!!", 0, {}, 0, 0);
  std::string done = std::move(out_);
  out_.clear();
  next_ino_ = 1;
  return done;
}

}  // namespace kiln::kilnd::vm
