#include "kilnd/runtime/vm/vmlinux.h"

#include <elf.h>
#include <lzma.h>

#include <cstring>

namespace kiln::kilnd::vm {
namespace {

constexpr std::string_view kXzMagic(
    "\xFD"
    "7zXZ\0",
    6);

template <typename T>
bool ReadAt(std::string_view data, size_t offset, T& out) {
  if (offset > data.size() || data.size() - offset < sizeof(T)) return false;
  std::memcpy(&out, data.data() + offset, sizeof(T));
  return true;
}

// The XZ payload per the boot protocol (Documentation/arch/x86/boot.rst): the protected-mode
// code starts after (setup_sects + 1) sectors; payload_offset (0x248) is relative to it.
std::string_view PayloadFromHeader(std::string_view img) {
  uint32_t magic = 0;
  uint8_t setup_sects = 0;
  uint16_t version = 0;
  uint32_t payload_offset = 0, payload_length = 0;
  if (!ReadAt(img, 0x202, magic) || magic != 0x53726448 /* "HdrS" */) return {};
  if (!ReadAt(img, 0x206, version) || version < 0x0208) return {};
  if (!ReadAt(img, 0x1f1, setup_sects) || !ReadAt(img, 0x248, payload_offset) ||
      !ReadAt(img, 0x24c, payload_length)) {
    return {};
  }
  if (setup_sects == 0) setup_sects = 4;
  size_t start = (static_cast<size_t>(setup_sects) + 1) * 512 + payload_offset;
  if (start > img.size() || img.size() - start < payload_length) return {};
  return img.substr(start, payload_length);
}

}  // namespace

Result<std::string> XzDecompress(std::string_view xz, size_t max_size) {
  lzma_stream strm = LZMA_STREAM_INIT;
  if (lzma_stream_decoder(&strm, UINT64_MAX, 0) != LZMA_OK) {
    return Fail(Errc::kInternal, "lzma_stream_decoder failed");
  }
  std::string out;
  out.resize(std::min<size_t>(max_size, std::max<size_t>(xz.size() * 4, 1u << 20)));
  strm.next_in = reinterpret_cast<const uint8_t*>(xz.data());
  strm.avail_in = xz.size();
  size_t produced = 0;
  lzma_ret ret = LZMA_OK;
  while (ret == LZMA_OK) {
    if (produced == out.size()) {
      if (out.size() >= max_size) {
        lzma_end(&strm);
        return Fail(Errc::kResourceExhausted,
                    "xz data decompresses to more than " + std::to_string(max_size) + " bytes");
      }
      out.resize(std::min(max_size, out.size() * 2));
    }
    strm.next_out = reinterpret_cast<uint8_t*>(out.data() + produced);
    strm.avail_out = out.size() - produced;
    ret = lzma_code(&strm, LZMA_FINISH);
    produced = out.size() - strm.avail_out;
  }
  lzma_end(&strm);
  if (ret != LZMA_STREAM_END) {
    return Fail(Errc::kInvalidArgument, "xz decompression failed (lzma error " +
                                            std::to_string(static_cast<int>(ret)) + ")");
  }
  out.resize(produced);
  return out;
}

Result<std::string> ExtractVmlinux(std::string_view bzimage, size_t max_size) {
  std::string_view payload = PayloadFromHeader(bzimage);
  if (payload.substr(0, kXzMagic.size()) != kXzMagic) {
    size_t at = bzimage.find(kXzMagic);
    if (at == std::string_view::npos) {
      return Fail(Errc::kInvalidArgument, "no XZ-compressed kernel payload in the image");
    }
    payload = bzimage.substr(at);
  }
  auto vmlinux = XzDecompress(payload, max_size);
  if (!vmlinux) return Unexpected(std::move(vmlinux).error().Wrap("kernel payload"));
  return vmlinux;
}

Result<uint32_t> CheckPvhElf(std::string_view elf) {
  Elf64_Ehdr eh;
  if (!ReadAt(elf, 0, eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
    return Fail(Errc::kInvalidArgument, "not an ELF file");
  }
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64 || eh.e_type != ET_EXEC) {
    return Fail(Errc::kInvalidArgument, "not an x86-64 ELF executable");
  }
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return Fail(Errc::kInvalidArgument, "unexpected ELF program header size");
  }
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    if (!ReadAt(elf, eh.e_phoff + i * sizeof(Elf64_Phdr), ph)) {
      return Fail(Errc::kInvalidArgument, "truncated ELF program headers");
    }
    if (ph.p_type != PT_NOTE || ph.p_offset > elf.size() ||
        elf.size() - ph.p_offset < ph.p_filesz) {
      continue;
    }
    std::string_view notes = elf.substr(ph.p_offset, ph.p_filesz);
    size_t pos = 0;
    Elf64_Nhdr nh;
    while (ReadAt(notes, pos, nh)) {
      size_t name_at = pos + sizeof nh;
      size_t desc_at = name_at + ((nh.n_namesz + 3) & ~3u);
      size_t next = desc_at + ((nh.n_descsz + 3) & ~3u);
      if (next > notes.size()) break;
      std::string_view name = notes.substr(name_at, nh.n_namesz);
      uint32_t entry = 0;
      if (nh.n_type == kXenElfnotePhys32Entry && name == std::string_view("Xen\0", 4) &&
          nh.n_descsz >= 4 && ReadAt(notes, desc_at, entry)) {
        return entry;
      }
      pos = next;
    }
  }
  return Fail(Errc::kInvalidArgument, "ELF has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
}

}  // namespace kiln::kilnd::vm
