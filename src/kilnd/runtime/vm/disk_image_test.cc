// Disk images: the qcow2 overlay writer checked by qemu-img and qemu-io against qemu-img's own
// overlays, and the ext4 agent and template images checked with e2fsck and debugfs.

#include "kilnd/runtime/vm/disk_image.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "kilnd/runtime/vm/child_process.h"
#include "kilnd/runtime/vm/file_io.h"
#include "kilnd/runtime/vm/test_support.h"

namespace kiln::kilnd::vm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::TempDir;

double Millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

bool HaveTool(const char* name) { return FindTool(name).has_value(); }

Result<ToolOutput> Tool(const char* name, std::vector<std::string> args) {
  KILN_ASSIGN_OR_RETURN(std::string path, FindTool(name));
  args.insert(args.begin(), path);
  return RunTool(args, "", std::chrono::seconds(120));
}

Status MakeSparse(const fs::path& path, uint64_t size) {
  KILN_TRY(WriteWholeFile(path, "", 0644));
  if (truncate(path.c_str(), static_cast<off_t>(size)) < 0) return FailErrno("truncate");
  return {};
}

json ImageInfo(const fs::path& image) {
  auto info = Tool("qemu-img", {"info", "--output=json", image.string()});
  if (!info) {
    ADD_FAILURE() << info.error().message();
    return json::object();
  }
  return json::parse(info->out, nullptr, false);
}

class OverlayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveTool("qemu-img") || !HaveTool("qemu-io")) GTEST_SKIP() << "no qemu-utils";
    ASSERT_FALSE(tmp_.path().empty());
  }
  TempDir tmp_;
};

TEST_F(OverlayTest, MatchesQemuImgAndPassesCheck) {
  // Sizes: tiny, exactly one L2 table's reach, a few L1 entries and an odd number of sectors.
  for (uint64_t size : {uint64_t{1} << 20, uint64_t{512} << 20, (uint64_t{10} << 30) + 512}) {
    fs::path base = tmp_.path() / ("base-" + std::to_string(size) + ".raw");
    ASSERT_TRUE(MakeSparse(base, size));
    fs::path ours = tmp_.path() / "ours.qcow2", theirs = tmp_.path() / "theirs.qcow2";
    Status st = CreateOverlay(base, "raw", ours);
    ASSERT_TRUE(st) << st.error().message();
    EXPECT_FALSE(fs::exists(ours.string() + ".tmp"));
    auto made = Tool("qemu-img", {"create", "-q", "-f", "qcow2", "-F", "raw", "-b", base.string(),
                                  theirs.string()});
    ASSERT_TRUE(made) << made.error().message();
    auto check = Tool("qemu-img", {"check", ours.string()});
    EXPECT_TRUE(check) << (check ? "" : check.error().message());
    json a = ImageInfo(ours), b = ImageInfo(theirs);
    EXPECT_EQ(a["format"], "qcow2");
    EXPECT_EQ(a["virtual-size"], size);
    EXPECT_EQ(a["backing-filename"], base.string());
    EXPECT_EQ(a["backing-filename-format"], "raw");
    EXPECT_EQ(a["cluster-size"], 65536);
    for (const char* key :
         {"virtual-size", "backing-filename", "backing-filename-format", "cluster-size"}) {
      EXPECT_EQ(a[key], b[key]) << key << " for size " << size;
    }
    EXPECT_EQ(a["format-specific"]["data"], b["format-specific"]["data"]);
    // qemu-img writes its metadata clusters out in full; ours are sparse.
    EXPECT_LE(a["actual-size"].get<uint64_t>(), b["actual-size"].get<uint64_t>());
    EXPECT_EQ(fs::file_size(ours), fs::file_size(theirs)) << size;
    fs::remove(ours);
    fs::remove(theirs);
    fs::remove(base);
  }
}

TEST_F(OverlayTest, WritesLandInTheOverlayAndReadsFallThrough) {
  fs::path base = tmp_.path() / "base.raw";
  ASSERT_TRUE(MakeSparse(base, 8 << 20));
  auto fill = Tool("qemu-io", {"-f", "raw", "-c", "write -P 0x5a 0 1M", base.string()});
  ASSERT_TRUE(fill) << fill.error().message();
  fs::path mid = tmp_.path() / "mid.qcow2", top = tmp_.path() / "top.qcow2";
  ASSERT_TRUE(CreateOverlay(base, "raw", mid));
  ASSERT_TRUE(CreateOverlay(mid, "qcow2", top));  // a chain: base <- mid <- top
  auto write = Tool("qemu-io", {"-f", "qcow2", "-c", "write -P 0xa5 64k 64k", "-c",
                                "write -P 0x11 7M 4k", top.string()});
  ASSERT_TRUE(write) << write.error().message();
  auto read = Tool("qemu-io", {"-f", "qcow2", "-c", "read -P 0x5a 0 64k", "-c",
                               "read -P 0xa5 64k 64k", "-c", "read -P 0x5a 128k 896k", "-c",
                               "read -P 0x11 7M 4k", "-c", "read -P 0 2M 1M", top.string()});
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(read->out.find("Pattern verification failed"), std::string::npos) << read->out;
  for (const fs::path& p : {mid, top}) {
    auto check = Tool("qemu-img", {"check", p.string()});
    EXPECT_TRUE(check) << p << ": " << (check ? "" : check.error().message());
  }
  // Nothing reached the lower layers.
  auto base_read = Tool("qemu-io", {"-f", "raw", "-c", "read -P 0x5a 64k 64k", "-c",
                                    "read -P 0 7M 4k", base.string()});
  ASSERT_TRUE(base_read) << base_read.error().message();
  EXPECT_EQ(base_read->out.find("Pattern verification failed"), std::string::npos);
  EXPECT_EQ(ImageInfo(top)["backing-filename"], mid.string());
  EXPECT_EQ(ImageInfo(top)["backing-filename-format"], "qcow2");
}

TEST_F(OverlayTest, RejectsBadBackings) {
  fs::path base = tmp_.path() / "base.raw", out = tmp_.path() / "o.qcow2";
  ASSERT_TRUE(MakeSparse(base, 1 << 20));
  EXPECT_EQ(CreateOverlay(base, "vmdk", out).error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(CreateOverlay(base, "qcow2", out).error().code(), Errc::kInvalidArgument);
  EXPECT_FALSE(CreateOverlay(tmp_.path() / "missing", "raw", out));
  ASSERT_TRUE(MakeSparse(base, 1000));
  EXPECT_EQ(CreateOverlay(base, "raw", out).error().code(), Errc::kInvalidArgument);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
}

TEST_F(OverlayTest, CostComparedWithQemuImg) {
  fs::path base = tmp_.path() / "base.raw";
  ASSERT_TRUE(MakeSparse(base, 1 << 30));
  constexpr int kRuns = 20;
  auto t0 = Clock::now();
  for (int i = 0; i < kRuns; ++i) {
    ASSERT_TRUE(CreateOverlay(base, "raw", tmp_.path() / ("ours" + std::to_string(i))));
  }
  auto t1 = Clock::now();
  for (int i = 0; i < kRuns; ++i) {
    ASSERT_TRUE(Tool("qemu-img", {"create", "-q", "-f", "qcow2", "-F", "raw", "-b", base.string(),
                                  (tmp_.path() / ("theirs" + std::to_string(i))).string()}));
  }
  auto t2 = Clock::now();
  std::printf("overlay: CreateOverlay %.3f ms, qemu-img create %.1f ms (mean of %d)\n",
              Millis(t1 - t0) / kRuns, Millis(t2 - t1) / kRuns, kRuns);
  EXPECT_LT(t1 - t0, t2 - t1);
}

// e2fsck -fn must find nothing; debugfs prints what we look for.
void ExpectCleanExt4(const fs::path& image) {
  auto fsck = Tool("e2fsck", {"-fn", image.string()});
  EXPECT_TRUE(fsck) << image << ": " << (fsck ? "" : fsck.error().message());
}

std::string Debugfs(const fs::path& image, const std::string& request) {
  auto out = Tool("debugfs", {"-R", request, image.string()});
  if (!out) {
    ADD_FAILURE() << request << ": " << out.error().message();
    return "";
  }
  return out->out;
}

class Ext4ImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveTool("mke2fs") || !HaveTool("debugfs") || !HaveTool("e2fsck")) {
      GTEST_SKIP() << "no e2fsprogs";
    }
    ASSERT_FALSE(tmp_.path().empty());
  }
  TempDir tmp_;
};

TEST_F(Ext4ImageTest, AgentImageHoldsTheFilesAtItsRoot) {
  fs::path a = tmp_.path() / "a.bin", b = tmp_.path() / "b.sh";
  ASSERT_TRUE(WriteWholeFile(a, std::string(300000, 'x'), 0600));
  ASSERT_TRUE(WriteWholeFile(b, "#!/bin/sh\necho hi\n", 0600));
  fs::path image = tmp_.path() / "agent.ext4";
  Status st = BuildAgentImage({{a, "envd", 0755}, {b, "interp", 0750}}, image);
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_FALSE(fs::exists(image.string() + ".tmp"));
  // The staging directory is gone.
  for (const auto& e : fs::directory_iterator(tmp_.path())) {
    EXPECT_EQ(e.path().filename().string().find(".agent-staging"), std::string::npos);
  }
  ExpectCleanExt4(image);
  EXPECT_LE(fs::file_size(image), 8u << 20);
  std::string envd = Debugfs(image, "stat /envd");
  EXPECT_NE(envd.find("Mode:  0755"), std::string::npos) << envd;
  EXPECT_NE(envd.find("Size: 300000"), std::string::npos) << envd;
  std::string interp = Debugfs(image, "stat /interp");
  EXPECT_NE(interp.find("Mode:  0750"), std::string::npos) << interp;
  if (geteuid() == 0) {
    EXPECT_NE(envd.find("User:     0   Group:     0"), std::string::npos) << envd;
  }
  std::string root = Debugfs(image, "stat /");
  EXPECT_NE(root.find("Mode:  0755"), std::string::npos) << root;
  EXPECT_NE(root.find("User:     0   Group:     0"), std::string::npos) << root;
  auto sb = Tool("dumpe2fs", {"-h", image.string()});
  ASSERT_TRUE(sb);
  EXPECT_EQ(sb->out.find("has_journal"), std::string::npos);
  EXPECT_NE(sb->out.find("kiln-agent"), std::string::npos);

  EXPECT_EQ(BuildAgentImage({{a, "x/y", 0755}}, image).error().code(), Errc::kInvalidArgument);
  EXPECT_FALSE(BuildAgentImage({{tmp_.path() / "missing", "m", 0755}}, image));
}

TEST_F(Ext4ImageTest, TemplateImageKeepsOwnersModesLinksAndRoom) {
  fs::path root = tmp_.path() / "rootfs";
  fs::create_directories(root / "etc");
  fs::create_directories(root / "tmp");
  fs::create_directories(root / "home/user");
  ASSERT_TRUE(WriteWholeFile(root / "etc/hostname", "template\n", 0644));
  ASSERT_TRUE(WriteWholeFile(root / "bin-tool", std::string(100000, 'b'), 0755));
  fs::create_hard_link(root / "bin-tool", root / "hard-link");
  fs::create_symlink("/etc/hostname", root / "short-link");
  fs::create_symlink(std::string(100, 'l'), root / "long-link");
  ASSERT_EQ(chmod((root / "tmp").c_str(), 01777), 0);
  bool as_root = geteuid() == 0;
  if (as_root) {
    ASSERT_EQ(chown((root / "home/user").c_str(), 1000, 1000), 0);
    ASSERT_EQ(mknod((root / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
    ASSERT_EQ(setxattr((root / "bin-tool").c_str(), "security.capability",
                       "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                       "\x00\x00",
                       20, 0),
              0);
  }
  auto usage = MeasureTree(root);
  ASSERT_TRUE(usage) << usage.error().message();
  // /, etc, tmp, home, home/user, hostname, bin-tool (+ its hard link), two symlinks (+ null).
  EXPECT_EQ(usage->inodes, as_root ? 10u : 9u);
  EXPECT_GE(usage->bytes, 100000u);

  fs::path image = tmp_.path() / "tmpl.ext4";
  TemplateImageOptions o;
  o.extra_bytes = 64 << 20;
  o.label = "kiln-test";
  auto t0 = Clock::now();
  Status st = BuildTemplateImage(root, image, o);
  ASSERT_TRUE(st) << st.error().message();
  std::printf("small template image: %.1f ms, %ju bytes\n", Millis(Clock::now() - t0),
              static_cast<uintmax_t>(fs::file_size(image)));
  ExpectCleanExt4(image);
  EXPECT_GE(fs::file_size(image), 64u << 20);
  struct stat st_image {};
  ASSERT_EQ(stat(image.c_str(), &st_image), 0);
  EXPECT_LT(static_cast<uint64_t>(st_image.st_blocks) * 512, fs::file_size(image) / 2);  // sparse

  auto sb = Tool("dumpe2fs", {"-h", image.string()});
  ASSERT_TRUE(sb);
  EXPECT_NE(sb->out.find("Filesystem volume name:   kiln-test"), std::string::npos);
  EXPECT_NE(sb->out.find("Reserved block count:     0\n"), std::string::npos);
  EXPECT_NE(sb->out.find("Block size:               4096"), std::string::npos);
  EXPECT_NE(sb->out.find("Inode size:\t          256"), std::string::npos) << sb->out;

  EXPECT_NE(Debugfs(image, "stat /tmp").find("Mode:  01777"), std::string::npos);
  std::string hard = Debugfs(image, "stat /hard-link");
  EXPECT_NE(hard.find("Links: 2"), std::string::npos) << hard;
  EXPECT_NE(Debugfs(image, "stat /short-link").find("Fast link dest: \"/etc/hostname\""),
            std::string::npos);
  EXPECT_NE(Debugfs(image, "cat /etc/hostname").find("template"), std::string::npos);
  std::string root_stat = Debugfs(image, "stat /");
  EXPECT_NE(root_stat.find("User:     0   Group:     0"), std::string::npos) << root_stat;
  if (as_root) {
    std::string home = Debugfs(image, "stat /home/user");
    EXPECT_NE(home.find("User:  1000   Group:  1000"), std::string::npos) << home;
    std::string null = Debugfs(image, "stat /null");
    EXPECT_NE(null.find("Type: character special"), std::string::npos) << null;
    EXPECT_NE(null.find("Device major/minor number: 01:03"), std::string::npos) << null;
    std::string xattrs = Debugfs(image, "ea_list /bin-tool");
    EXPECT_NE(xattrs.find("security.capability"), std::string::npos) << xattrs;
  }
  EXPECT_EQ(BuildTemplateImage(tmp_.path() / "missing", image, o).error().code(), Errc::kNotFound);
}

// Opt-in (KILN_TEST_VM_TEMPLATE_IMAGES=1, root): builds images of the installed templates
// (read-only use of /var/cache/kiln/templates/<name>/rootfs) and prints the time.
TEST_F(Ext4ImageTest, InstalledTemplatesTiming) {
  if (getenv("KILN_TEST_VM_TEMPLATE_IMAGES") == nullptr) GTEST_SKIP() << "opt-in";
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  for (const char* name : {"base", "code-interpreter-v1"}) {
    fs::path rootfs = fs::path("/var/cache/kiln/templates") / name / "rootfs";
    if (!fs::is_directory(rootfs)) continue;
    fs::path image = tmp_.path() / (std::string(name) + ".ext4");
    auto t0 = Clock::now();
    auto usage = MeasureTree(rootfs);
    ASSERT_TRUE(usage) << usage.error().message();
    auto t1 = Clock::now();
    Status st = BuildTemplateImage(rootfs, image);
    ASSERT_TRUE(st) << st.error().message();
    auto t2 = Clock::now();
    struct stat st_image {};
    ASSERT_EQ(stat(image.c_str(), &st_image), 0);
    std::printf(
        "%s: tree %ju MiB, %ju inodes, measured in %.0f ms; image %.1f s total, %ju MiB "
        "(allocated %ju MiB)\n",
        name, static_cast<uintmax_t>(usage->bytes >> 20), static_cast<uintmax_t>(usage->inodes),
        Millis(t1 - t0), Millis(t2 - t0) / 1000, static_cast<uintmax_t>(fs::file_size(image) >> 20),
        static_cast<uintmax_t>(static_cast<uint64_t>(st_image.st_blocks) * 512 >> 20));
    ExpectCleanExt4(image);
    auto df = Tool("dumpe2fs", {"-h", image.string()});
    ASSERT_TRUE(df);
    for (const char* key : {"Free blocks:", "Free inodes:", "Block count:", "Inode count:"}) {
      size_t at = df->out.find(key);
      if (at != std::string::npos) {
        std::printf("  %s\n", df->out.substr(at, df->out.find('\n', at) - at).c_str());
      }
    }
    fs::remove(image);
  }
}

}  // namespace
}  // namespace kiln::kilnd::vm
