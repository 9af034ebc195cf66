#pragma once

// The guest kernel as QEMU boots it fastest under TCG: the uncompressed ELF vmlinux entered
// through PVH (XEN_ELFNOTE_PHYS32_ENTRY), which skips the bzImage's in-guest decompression
// (~2.2 s under TCG, /work/shared/notes/measured-qemu.md §1).

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln::kilnd::vm {

// XEN_ELFNOTE_PHYS32_ENTRY: the note type of the PVH entry point (xen/include/public/elfnote.h).
inline constexpr uint32_t kXenElfnotePhys32Entry = 18;

// Decompresses the kernel payload of an x86 bzImage: the setup header's payload_offset /
// payload_length locate it (falling back to the first XZ stream magic), and it must be XZ
// (Debian's kernels are). kInvalidArgument if `bzimage` is not such an image; the output is
// capped at `max_size` bytes (kResourceExhausted).
Result<std::string> ExtractVmlinux(std::string_view bzimage, size_t max_size = 512u << 20);

// kInvalidArgument unless `elf` is a 64-bit x86-64 ELF executable with a PT_NOTE "Xen" note
// of type XEN_ELFNOTE_PHYS32_ENTRY. Returns the PVH entry address.
Result<uint32_t> CheckPvhElf(std::string_view elf);

// Decompresses one whole XZ stream (trailing bytes ignored). Also used for .ko.xz modules.
Result<std::string> XzDecompress(std::string_view xz, size_t max_size);

}  // namespace kiln::kilnd::vm
