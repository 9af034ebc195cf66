#pragma once

// The disks of a vm-runtime guest:
//   /dev/vda  the sandbox's root: a qcow2 overlay (CreateOverlay) whose backing chain ends in
//             the template image (BuildTemplateImage), an ext4 made from the template rootfs;
//   /dev/vdb  the agent image (BuildAgentImage): a small read-only ext4 with kiln-envd and
//             kiln-interp, which kiln-vminit mounts at /.kiln (kiln.agent=).
// ext4 images are made by mke2fs -d (e2fsprogs), run with an explicit argv; they are written
// to <out>.tmp and renamed, so a reader never sees half an image.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"

namespace kiln::kilnd::vm {

struct AgentFile {
  std::filesystem::path source;  // a host file
  std::string name;              // its name at the image's root (no '/')
  mode_t mode = 0755;
};

// An ext4 image holding `files` at its root, owned by root (when run as root: the staged
// copies are ours), with room to spare but no journal (it is mounted read-only).
Status BuildAgentImage(const std::vector<AgentFile>& files, const std::filesystem::path& out);

struct TemplateImageOptions {
  // Writable room for the sandbox on top of the tree's size (the file is sparse).
  uint64_t extra_bytes = uint64_t{1} << 30;
  std::string label = "kiln-root";  // at most 16 bytes
};

// What an image for `rootfs` needs: the tree's allocated bytes (files rounded up to 4 KiB,
// hard links once) and its inode count.
struct TreeUsage {
  uint64_t bytes = 0;
  uint64_t inodes = 0;
};
Result<TreeUsage> MeasureTree(const std::filesystem::path& rootfs);

// An ext4 image of the template rootfs `rootfs` (owners, modes, xattrs and device nodes come
// along when run as root): size = tree bytes * 1.15 + inode tables + journal + extra_bytes,
// inodes = tree inodes * 1.25 + one per 16 KiB of extra_bytes; no reserved blocks, the
// image root owned by 0:0. `rootfs` is only read.
Status BuildTemplateImage(const std::filesystem::path& rootfs, const std::filesystem::path& out,
                          const TemplateImageOptions& options = {});

// An empty qcow2 (v3, 64 KiB clusters) overlay of `backing` ("raw" or "qcow2"; its virtual
// size is read from it), written directly: header, backing format extension, backing file
// name (made absolute), refcount table and block, L1 table. The same layout `qemu-img create
// -f qcow2 -F <fmt> -b <backing>` writes, in ~0.1 ms instead of a ~25 ms process. Not synced:
// an overlay lives as long as its sandbox.
Status CreateOverlay(const std::filesystem::path& backing, const std::string& backing_format,
                     const std::filesystem::path& out);

}  // namespace kiln::kilnd::vm
