// Boots Debian's kernel under QEMU TCG with kiln's initramfs and a tiny ext4 root holding a
// static busybox, and checks the guest's `uname -r` on the serial console. Privileged: needs
// root (apt-get download on the first run), QEMU and busybox-static.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "kilnd/runtime/vm/child_process.h"
#include "kilnd/runtime/vm/file_io.h"
#include "kilnd/runtime/vm/guest_kernel.h"
#include "kilnd/runtime/vm/initramfs.h"
#include "kilnd/runtime/vm/microvm.h"
#include "kilnd/runtime/vm/test_support.h"

namespace kiln::kilnd::vm {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

constexpr char kQemu[] = "/usr/bin/qemu-system-x86_64";
constexpr char kBusybox[] = "/bin/busybox";

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A line of the console output equal to `want` (the tty turns "\n" into "\r\n").
bool HasLine(const std::string& text, const std::string& want) {
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    std::string_view line(text.data() + start,
                          (nl == std::string::npos ? text.size() : nl) - start);
    while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == want) return true;
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return false;
}

class VmBootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    if (access(kQemu, X_OK) != 0) GTEST_SKIP() << "no " << kQemu << " (qemu-system-x86)";
    if (access(kBusybox, X_OK) != 0) GTEST_SKIP() << "no " << kBusybox << " (busybox-static)";
    if (access(testing::VmInitBinary().c_str(), X_OK) != 0) {
      GTEST_SKIP() << "no kiln-vminit at " << testing::VmInitBinary();
    }
    ASSERT_FALSE(tmp_.path().empty());
  }

  TempDir tmp_;
};

TEST_F(VmBootTest, DebianKernelBootsToBusyboxOnExt4Root) {
  auto t0 = Clock::now();
  GuestKernelOptions kopts;
  kopts.cache_dir = testing::VmCacheDir();
  auto kernel = EnsureGuestKernel(kopts);
  ASSERT_TRUE(kernel) << kernel.error().message();
  auto t_kernel = Clock::now();

  InitramfsSpec ispec;
  ispec.vminit = testing::VmInitBinary();
  ispec.modules_dir = kernel->modules_dir;
  auto initramfs = BuildInitramfs(ispec);
  ASSERT_TRUE(initramfs) << initramfs.error().message();
  fs::path initrd = tmp_.path() / "initramfs.cpio";
  ASSERT_TRUE(WriteWholeFile(initrd, initramfs->archive, 0644));
  // For experiments by hand: a copy of the initramfs kept after the test.
  if (const char* save = getenv("KILN_TEST_VM_SAVE_INITRD")) {
    ASSERT_TRUE(WriteWholeFile(save, initramfs->archive, 0644));
  }
  auto t_initrd = Clock::now();

  // The root: busybox as /bin/busybox on a 16 MiB ext4 image.
  fs::path rootdir = tmp_.path() / "root";
  for (const char* d : {"bin", "sbin", "dev", "proc", "sys", "tmp"}) {
    fs::create_directories(rootdir / d);
  }
  fs::copy_file(kBusybox, rootdir / "bin/busybox");
  fs::path image = tmp_.path() / "root.ext4";
  auto mke2fs = FindTool("mke2fs");
  ASSERT_TRUE(mke2fs) << mke2fs.error().message();
  auto mk =
      RunTool({*mke2fs, "-q", "-F", "-t", "ext4", "-d", rootdir.string(), image.string(), "16M"},
              "", std::chrono::seconds(60));
  ASSERT_TRUE(mk) << mk.error().message();
  auto t_image = Clock::now();

  MicrovmConfig config;
  config.qemu = kQemu;
  config.kernel = kernel->vmlinux;
  config.initrd = initrd;
  config.disks.push_back({image, "raw", false});
  GuestCmdlineOptions cmdline;
  if (auto khz = HostTscKhz()) cmdline.tsc_khz = *khz;
  cmdline.init = {"/bin/busybox", "uname", "-r"};
  // For investigating boot time: extra kernel parameters (e.g. "loglevel=7 printk.time=1"),
  // another -cpu, and the console printed.
  if (const char* extra = getenv("KILN_TEST_VM_CMDLINE")) cmdline.extra.push_back(extra);
  if (const char* cpu = getenv("KILN_TEST_VM_CPU")) config.cpu = cpu;
  config.cmdline = GuestKernelCmdline(cmdline);

  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd out_r(p[0]), out_w(p[1]);
  std::vector<std::string> argv = MicrovmArgv(config);
  sys::SpawnSpec spec;
  spec.path = argv[0];
  spec.argv = argv;
  spec.stdout_fd = out_w.get();
  spec.stderr_fd = out_w.get();
  auto t_spawn = Clock::now();
  auto qemu = ChildProcess::Start(spec);
  ASSERT_TRUE(qemu) << qemu.error().message();
  out_w.reset();

  const std::string release = kernel->release;
  auto console = ReadUntil(out_r.get(), qemu->pidfd(), t_spawn + std::chrono::seconds(60),
                           [&release](const std::string& text) { return HasLine(text, release); });
  ASSERT_TRUE(console) << console.error().message();
  auto t_marker = Clock::now();
  if (getenv("KILN_TEST_VM_VERBOSE") != nullptr) std::printf("%s\n", console->c_str());
  // PID 1 (busybox uname) exits, the kernel panics, panic=-1 reboots, -no-reboot ends QEMU.
  auto status = qemu->Wait(Clock::now() + std::chrono::seconds(30));
  ASSERT_TRUE(status) << status.error().message();
  EXPECT_TRUE(WIFEXITED(*status)) << DescribeWaitStatus(*status);

  std::printf(
      "kernel %s: ensure %.3f s; initramfs %zu bytes (%zu modules) in %.3f s; "
      "ext4 image %.3f s; QEMU start -> guest uname -r %.3f s\n",
      kernel->release.c_str(), Seconds(t_kernel - t0), initramfs->archive.size(),
      initramfs->modules.size(), Seconds(t_initrd - t_kernel), Seconds(t_image - t_initrd),
      Seconds(t_marker - t_spawn));
  RecordProperty("boot_seconds", std::to_string(Seconds(t_marker - t_spawn)));
}

}  // namespace
}  // namespace kiln::kilnd::vm
