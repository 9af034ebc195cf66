// Unit tests of the image builders: vmlinux extraction, cpio, kernel modules, initramfs.

#include <elf.h>
#include <gtest/gtest.h>
#include <lzma.h>
#include <sys/stat.h>

#include <cstring>
#include <map>

#include "kilnd/runtime/vm/cpio.h"
#include "kilnd/runtime/vm/file_io.h"
#include "kilnd/runtime/vm/initramfs.h"
#include "kilnd/runtime/vm/kernel_modules.h"
#include "kilnd/runtime/vm/test_support.h"
#include "kilnd/runtime/vm/vmlinux.h"

namespace kiln::kilnd::vm {
namespace {

namespace fs = std::filesystem;

std::string Xz(std::string_view data) {
  std::string out(data.size() + 1024, '\0');
  size_t pos = 0;
  lzma_ret r = lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, nullptr,
                                       reinterpret_cast<const uint8_t*>(data.data()), data.size(),
                                       reinterpret_cast<uint8_t*>(out.data()), &pos, out.size());
  EXPECT_EQ(r, LZMA_OK);
  out.resize(pos);
  return out;
}

template <typename T>
void Put(std::string& s, size_t at, const T& v) {
  if (s.size() < at + sizeof v) s.resize(at + sizeof v);
  std::memcpy(s.data() + at, &v, sizeof v);
}

// An x86-64 ELF executable with one PT_NOTE segment holding `notes`.
std::string ElfWithNotes(const std::string& notes) {
  std::string elf;
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_phoff = sizeof eh;
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 1;
  Put(elf, 0, eh);
  Elf64_Phdr ph{};
  ph.p_type = PT_NOTE;
  ph.p_offset = sizeof eh + sizeof ph;
  ph.p_filesz = notes.size();
  Put(elf, sizeof eh, ph);
  elf += notes;
  return elf;
}

std::string Note(const char* name, uint32_t type, uint32_t desc) {
  std::string n;
  Elf64_Nhdr nh{static_cast<Elf64_Word>(strlen(name) + 1), 4, type};
  Put(n, 0, nh);
  n.append(name, strlen(name) + 1);
  n.resize((n.size() + 3) & ~size_t{3}, '\0');
  Put(n, n.size(), desc);
  return n;
}

TEST(VmlinuxTest, FindsThePvhEntryNote) {
  std::string elf = ElfWithNotes(Note("GNU", 3, 7) + Note("Xen", kXenElfnotePhys32Entry, 0x1000));
  auto entry = CheckPvhElf(elf);
  ASSERT_TRUE(entry) << entry.error().message();
  EXPECT_EQ(*entry, 0x1000u);
}

TEST(VmlinuxTest, RejectsElfWithoutPvhNote) {
  EXPECT_FALSE(CheckPvhElf(ElfWithNotes(Note("Xen", 5, 1))));
  EXPECT_FALSE(CheckPvhElf("not an elf"));
  EXPECT_FALSE(CheckPvhElf(""));
}

TEST(VmlinuxTest, ExtractsTheXzPayloadOfABzImage) {
  std::string kernel =
      ElfWithNotes(Note("Xen", kXenElfnotePhys32Entry, 0x2000)) + std::string(5000, 'k');
  std::string payload = Xz(kernel);
  // Setup header: 4 setup sectors + boot sector, payload at offset 64 of the protected-mode part.
  std::string img(5 * 512 + 64, '\0');
  Put(img, 0x1f1, uint8_t{4});
  Put(img, 0x202, uint32_t{0x53726448});
  Put(img, 0x206, uint16_t{0x020f});
  Put(img, 0x248, uint32_t{64});
  Put(img, 0x24c, static_cast<uint32_t>(payload.size()));
  img += payload;
  img += "trailing";
  auto out = ExtractVmlinux(img);
  ASSERT_TRUE(out) << out.error().message();
  EXPECT_EQ(*out, kernel);
}

TEST(VmlinuxTest, FallsBackToTheXzMagicAndCapsTheOutput) {
  std::string img = std::string(700, 'x') + Xz(std::string(100000, 'a'));
  auto out = ExtractVmlinux(img);
  ASSERT_TRUE(out) << out.error().message();
  EXPECT_EQ(out->size(), 100000u);
  auto capped = ExtractVmlinux(img, 1000);
  ASSERT_FALSE(capped);
  EXPECT_EQ(capped.error().code(), Errc::kResourceExhausted);
  EXPECT_FALSE(ExtractVmlinux("no payload here"));
}

struct CpioEntry {
  uint32_t mode;
  uint32_t rmajor, rminor;
  std::string data;
};

// A minimal newc reader for the tests.
std::map<std::string, CpioEntry> ParseCpio(std::string_view a, bool* trailer) {
  std::map<std::string, CpioEntry> out;
  size_t pos = 0;
  *trailer = false;
  auto hex = [&](size_t field) {
    return static_cast<uint32_t>(
        std::stoul(std::string(a.substr(pos + 6 + field * 8, 8)), nullptr, 16));
  };
  while (pos + 110 <= a.size()) {
    EXPECT_EQ(a.substr(pos, 6), "070701");
    uint32_t mode = hex(1), size = hex(6), rmaj = hex(9), rmin = hex(10), namesize = hex(11);
    std::string name(a.substr(pos + 110, namesize - 1));
    size_t data_at = (pos + 110 + namesize + 3) & ~size_t{3};
    std::string data(a.substr(data_at, size));
    pos = (data_at + size + 3) & ~size_t{3};
    if (name == "TRAILER!!!") {
      *trailer = true;
      break;
    }
    out[name] = CpioEntry{mode, rmaj, rmin, data};
  }
  EXPECT_EQ(pos, a.size());
  return out;
}

TEST(CpioWriterTest, WritesNewcEntriesOfEveryType) {
  CpioWriter w;
  ASSERT_TRUE(w.AddDirectory("dev", 0755));
  ASSERT_TRUE(w.AddCharDevice("dev/console", 0600, 5, 1));
  ASSERT_TRUE(w.AddFile("init", 0755, "#!odd size"));
  ASSERT_TRUE(w.AddSymlink("bin", "usr/bin"));
  std::string archive = w.Finish();
  EXPECT_EQ(archive.size() % 4, 0u);
  bool trailer = false;
  auto entries = ParseCpio(archive, &trailer);
  EXPECT_TRUE(trailer);
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries["dev"].mode, S_IFDIR | 0755u);
  EXPECT_EQ(entries["dev/console"].mode, S_IFCHR | 0600u);
  EXPECT_EQ(entries["dev/console"].rmajor, 5u);
  EXPECT_EQ(entries["dev/console"].rminor, 1u);
  EXPECT_EQ(entries["init"].mode, S_IFREG | 0755u);
  EXPECT_EQ(entries["init"].data, "#!odd size");
  EXPECT_EQ(entries["bin"].mode, S_IFLNK | 0777u);
  EXPECT_EQ(entries["bin"].data, "usr/bin");
}

TEST(CpioWriterTest, RejectsBadPaths) {
  CpioWriter w;
  EXPECT_FALSE(w.AddFile("/abs", 0644, ""));
  EXPECT_FALSE(w.AddFile("", 0644, ""));
  EXPECT_FALSE(w.AddDirectory("dir/", 0755));
  EXPECT_FALSE(w.AddSymlink("l", ""));
}

// A relocatable ELF64 with a .modinfo section, like a kernel module.
std::string FakeModule(const std::string& name, const std::string& depends) {
  std::string modinfo = "license=GPL" + std::string(1, '\0') + "depends=" + depends +
                        std::string(1, '\0') + "name=" + name + std::string(1, '\0');
  std::string shstr =
      std::string(1, '\0') + ".modinfo" + std::string(1, '\0') + ".shstrtab" + std::string(1, '\0');
  std::string ko;
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_type = ET_REL;
  eh.e_machine = EM_X86_64;
  eh.e_shentsize = sizeof(Elf64_Shdr);
  eh.e_shnum = 3;
  eh.e_shstrndx = 2;
  size_t modinfo_at = sizeof eh, shstr_at = modinfo_at + modinfo.size();
  eh.e_shoff = (shstr_at + shstr.size() + 7) & ~size_t{7};
  Put(ko, 0, eh);
  ko += modinfo + shstr;
  ko.resize(eh.e_shoff, '\0');
  Elf64_Shdr null{}, mi{}, ss{};
  mi.sh_name = 1;
  mi.sh_type = SHT_PROGBITS;
  mi.sh_offset = modinfo_at;
  mi.sh_size = modinfo.size();
  ss.sh_name = 10;
  ss.sh_type = SHT_STRTAB;
  ss.sh_offset = shstr_at;
  ss.sh_size = shstr.size();
  Put(ko, ko.size(), null);
  Put(ko, ko.size(), mi);
  Put(ko, ko.size(), ss);
  return ko;
}

std::string Signed(const std::string& ko) {
  std::string sig(256, 's');
  std::string info(12, '\0');
  info[8] = 0;
  info[9] = 0;
  info[10] = 1;  // sig_len = 256, big-endian
  info[11] = 0;
  return ko + sig + info + "~Module signature appended~\n";
}

TEST(KernelModulesTest, ParsesModInfo) {
  auto mi = ParseModInfo(FakeModule("virtio-rng", "virtio,virtio_ring"));
  ASSERT_TRUE(mi) << mi.error().message();
  EXPECT_EQ(mi->name, "virtio_rng");
  EXPECT_EQ(mi->depends, (std::vector<std::string>{"virtio", "virtio_ring"}));
  EXPECT_FALSE(ParseModInfo("junk"));
}

TEST(KernelModulesTest, StripsAnAppendedSignature) {
  std::string ko = FakeModule("a", "");
  EXPECT_EQ(StripModuleSignature(Signed(ko)), ko);
  EXPECT_EQ(StripModuleSignature(ko), ko);
}

class ModuleTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path() / "lib/modules/9.9.9";
    fs::create_directories(dir_ / "kernel/a");
    fs::create_directories(dir_ / "kernel/b");
    Write("kernel/a/top.ko", Signed(FakeModule("top", "mid,base,builtin_one")));
    Write("kernel/b/mid.ko.xz", Xz(FakeModule("mid", "base")));
    Write("kernel/b/base.ko", FakeModule("base", ""));
    Write("kernel/b/loop-a.ko", FakeModule("loop_a", "loop_b"));
    Write("kernel/b/loop-b.ko", FakeModule("loop_b", "loop_a"));
    Write("modules.builtin", "kernel/x/builtin_one.ko\n");
  }
  void Write(const std::string& rel, const std::string& data) {
    ASSERT_TRUE(WriteWholeFile(dir_ / rel, data, 0644));
  }

  testing::TempDir tmp_;
  fs::path dir_;
};

TEST_F(ModuleTreeTest, ClosureListsDependenciesFirstOnce) {
  auto tree = ModuleTree::Scan(dir_);
  ASSERT_TRUE(tree) << tree.error().message();
  auto mods = tree->Closure({"top", "base"});
  ASSERT_TRUE(mods) << mods.error().message();
  std::vector<std::string> names;
  for (const Module& m : *mods) names.push_back(m.name);
  EXPECT_EQ(names, (std::vector<std::string>{"base", "mid", "top"}));
  EXPECT_EQ((*mods)[1].data, FakeModule("mid", "base"));                  // decompressed
  EXPECT_EQ((*mods)[2].data, FakeModule("top", "mid,base,builtin_one"));  // signature stripped
}

TEST_F(ModuleTreeTest, MissingModulesAndCyclesFail) {
  auto tree = ModuleTree::Scan(dir_);
  ASSERT_TRUE(tree);
  auto missing = tree->Closure({"nope"});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Errc::kNotFound);
  EXPECT_FALSE(tree->Closure({"loop-a"}));
}

TEST_F(ModuleTreeTest, InitramfsHoldsInitModulesAndList) {
  Write("vminit",
        "\x7f"
        "ELF-fake-init");
  InitramfsSpec spec;
  spec.vminit = dir_ / "vminit";
  spec.modules_dir = dir_;
  spec.modules = {"top"};
  auto img = BuildInitramfs(spec);
  ASSERT_TRUE(img) << img.error().message();
  EXPECT_EQ(img->modules, (std::vector<std::string>{"base", "mid", "top"}));
  bool trailer = false;
  auto entries = ParseCpio(img->archive, &trailer);
  EXPECT_TRUE(trailer);
  EXPECT_EQ(entries["init"].data,
            "\x7f"
            "ELF-fake-init");
  EXPECT_EQ(entries["init"].mode, S_IFREG | 0755u);
  EXPECT_EQ(entries["dev/console"].mode, S_IFCHR | 0600u);
  EXPECT_TRUE(entries.count("newroot"));
  EXPECT_EQ(entries["kiln/modules.list"].data,
            "kiln/modules/00-base.ko\nkiln/modules/01-mid.ko\nkiln/modules/02-top.ko\n");
  EXPECT_EQ(entries["kiln/modules/01-mid.ko"].data, FakeModule("mid", "base"));
}

}  // namespace
}  // namespace kiln::kilnd::vm
