#pragma once

// A writer for the cpio "newc" format (the kernel's initramfs format,
// Documentation/driver-api/early-userspace/buffer-format.rst).

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln::kilnd::vm {

// Builds an archive in memory. Paths are relative ("init", "dev/console"); parents must be
// added before their children (the kernel does not create them). Every entry is owned by
// root with mtime 0, so the same input gives the same bytes. Not thread-safe.
class CpioWriter {
 public:
  // `mode` holds the permission bits only (07777); the type comes from the method.
  Status AddDirectory(std::string_view path, mode_t mode);
  Status AddFile(std::string_view path, mode_t mode, std::string_view data);
  Status AddSymlink(std::string_view path, std::string_view target);
  Status AddCharDevice(std::string_view path, mode_t mode, uint32_t major, uint32_t minor);

  // Appends the TRAILER!!! entry and returns the archive; the writer is empty afterwards.
  std::string Finish();

 private:
  Status Add(std::string_view path, uint32_t mode, std::string_view data, uint32_t rmajor,
             uint32_t rminor);

  std::string out_;
  uint32_t next_ino_ = 1;
};

}  // namespace kiln::kilnd::vm
