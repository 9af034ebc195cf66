// Unit tests of the pure configuration parts: kernel package resolution, the guest init's
// command line, the QEMU command line.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>

#include "kilnd/runtime/vm/file_io.h"
#include "kilnd/runtime/vm/guest_kernel.h"
#include "kilnd/runtime/vm/microvm.h"
#include "kilnd/runtime/vm/test_support.h"
#include "kilnd/runtime/vm/vminit.h"

namespace kiln::kilnd::vm {
namespace {

TEST(GuestKernelTest, ParsesTheMetapackageDependency) {
  auto pkg = ParseKernelDependency("linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n");
  ASSERT_TRUE(pkg) << pkg.error().message();
  EXPECT_EQ(*pkg, "linux-image-6.1.0-56-amd64");
  auto alt =
      ParseKernelDependency("x\n  Recommends: firmware\n |Depends: linux-image-6.12.1+bpo-amd64\n");
  ASSERT_TRUE(alt);
  EXPECT_EQ(*alt, "linux-image-6.12.1+bpo-amd64");
  EXPECT_FALSE(ParseKernelDependency("linux-image-amd64\n  Depends: initramfs-tools\n"));
  EXPECT_FALSE(ParseKernelDependency(""));
}

TEST(GuestKernelTest, ValidatesPackageNames) {
  EXPECT_TRUE(IsKernelPackageName("linux-image-6.1.0-56-amd64"));
  EXPECT_FALSE(IsKernelPackageName("linux-image-"));
  EXPECT_FALSE(IsKernelPackageName("linux-image-../../x"));
  EXPECT_FALSE(IsKernelPackageName("bash"));
  EXPECT_FALSE(IsKernelPackageName("linux-image-A"));
}

TEST(GuestKernelTest, IncompleteCacheEntriesAreNotFound) {
  testing::TempDir tmp;
  std::filesystem::path dir = tmp.path() / "kernels/linux-image-1.0-amd64";
  std::filesystem::create_directories(dir);
  EXPECT_EQ(FindCachedKernel(tmp.path(), "linux-image-1.0-amd64").error().code(), Errc::kNotFound);
  ASSERT_TRUE(WriteWholeFile(
      dir / "kernel.json",
      R"({"format":1,"package":"linux-image-1.0-amd64","release":"1.0-amd64"})", 0644));
  EXPECT_FALSE(FindCachedKernel(tmp.path(), "linux-image-1.0-amd64"));  // no vmlinux yet
  ASSERT_TRUE(WriteWholeFile(dir / "vmlinux", "elf", 0644));
  std::filesystem::create_directories(dir / "lib/modules/1.0-amd64");
  auto k = FindCachedKernel(tmp.path(), "linux-image-1.0-amd64");
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_EQ(k->release, "1.0-amd64");
  EXPECT_EQ(k->modules_dir, dir / "lib/modules/1.0-amd64");
  EXPECT_EQ(FindCachedKernel(tmp.path(), "../x").error().code(), Errc::kInvalidArgument);
}

TEST(GuestKernelTest, UnresolvablePackageFallsBackToTheNewestCachedKernel) {
  if (access("/usr/bin/apt-cache", X_OK) != 0) GTEST_SKIP() << "no apt-cache";
  testing::TempDir tmp;
  GuestKernelOptions o;
  o.cache_dir = tmp.path();
  o.metapackage = "kiln-test-no-such-metapackage";
  EXPECT_FALSE(EnsureGuestKernel(o));  // nothing cached either
  std::filesystem::path dir = tmp.path() / "kernels/linux-image-2.0-amd64";
  std::filesystem::create_directories(dir / "lib/modules/2.0-amd64");
  ASSERT_TRUE(WriteWholeFile(dir / "vmlinux", "elf", 0644));
  ASSERT_TRUE(WriteWholeFile(
      dir / "kernel.json",
      R"({"format":1,"package":"linux-image-2.0-amd64","release":"2.0-amd64"})", 0644));
  auto k = EnsureGuestKernel(o);
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_EQ(k->release, "2.0-amd64");
}

TEST(VmInitCmdlineTest, DefaultsAndOverrides) {
  auto d = ParseVmInitCmdline("console=ttyS0 quiet\n");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->root_device, "/dev/vda");
  EXPECT_EQ(d->root_fstype, "ext4");
  EXPECT_FALSE(d->root_readonly);
  EXPECT_EQ(d->init, (std::vector<std::string>{"/sbin/init"}));

  auto c = ParseVmInitCmdline(
      "quiet kiln.root=/dev/vdb kiln.rootfstype=erofs kiln.rootflags=ro,noatime kiln.wait=3 "
      "-- /bin/busybox uname -r\n");
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->root_device, "/dev/vdb");
  EXPECT_EQ(c->root_fstype, "erofs");
  EXPECT_TRUE(c->root_readonly);
  EXPECT_EQ(c->root_data, "noatime");
  EXPECT_EQ(c->wait, std::chrono::seconds(3));
  EXPECT_EQ(c->init, (std::vector<std::string>{"/bin/busybox", "uname", "-r"}));
}

TEST(VmInitCmdlineTest, RejectsNonsense) {
  EXPECT_FALSE(ParseVmInitCmdline("kiln.root=vda"));
  EXPECT_FALSE(ParseVmInitCmdline("kiln.wait=0"));
  EXPECT_FALSE(ParseVmInitCmdline("kiln.wait=abc"));
  EXPECT_FALSE(ParseVmInitCmdline("-- relative/init"));
}

TEST(VmInitCmdlineTest, GuestParameters) {
  auto d = ParseVmInitCmdline("console=ttyS0 -- /sbin/init");
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->agent_device.empty());
  EXPECT_TRUE(d->hostname.empty());
  EXPECT_FALSE(d->net.has_value());
  EXPECT_TRUE(d->dns.empty());

  auto c = ParseVmInitCmdline(
      "console=ttyS0 kiln.agent=/dev/vdb kiln.hostname=sandbox kiln.net=10.0.2.2/24,10.0.2.1 "
      "kiln.dns=10.0.2.1 -- /.kiln/envd --listen 0.0.0.0 --port 49983\n");
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->agent_device, "/dev/vdb");
  EXPECT_EQ(c->hostname, "sandbox");
  ASSERT_TRUE(c->net.has_value());
  EXPECT_EQ(c->net->address, 0x0a000202u);
  EXPECT_EQ(c->net->prefix, 24);
  EXPECT_EQ(c->net->gateway, std::optional<uint32_t>(0x0a000201u));
  EXPECT_EQ(c->dns, (std::vector<std::string>{"10.0.2.1"}));
  EXPECT_EQ(c->init,
            (std::vector<std::string>{"/.kiln/envd", "--listen", "0.0.0.0", "--port", "49983"}));

  // No gateway: no default route. Several nameservers. A later parameter wins.
  auto n = ParseVmInitCmdline(
      "kiln.net=192.0.2.9/30 kiln.dns=1.1.1.1 kiln.dns=192.0.2.1,198.51.100.1,203.0.113.1 "
      "kiln.hostname=a-b.example");
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(n->net->address, 0xc0000209u);
  EXPECT_EQ(n->net->prefix, 30);
  EXPECT_FALSE(n->net->gateway.has_value());
  EXPECT_EQ(n->dns, (std::vector<std::string>{"192.0.2.1", "198.51.100.1", "203.0.113.1"}));
  EXPECT_EQ(n->hostname, "a-b.example");
}

TEST(VmInitCmdlineTest, RejectsBadGuestParameters) {
  for (const char* bad : {
           "kiln.agent=vdb",
           "kiln.agent=/dev/",
           "kiln.hostname=",
           "kiln.hostname=-x",
           "kiln.hostname=a..b",
           "kiln.hostname=a_b",
           "kiln.hostname=x-",
           "kiln.hostname=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
           "kiln.net=10.0.2.2",
           "kiln.net=10.0.2.2/",
           "kiln.net=10.0.2.2/0",
           "kiln.net=10.0.2.2/31",
           "kiln.net=10.0.2.2/24x",
           "kiln.net=10.0.2/24",
           "kiln.net=10.0.2.0/24",
           "kiln.net=10.0.2.255/24",
           "kiln.net=10.0.2.2/24,",
           "kiln.net=10.0.2.2/24,10.0.3.1",
           "kiln.net=10.0.2.2/24,10.0.2.2",
           "kiln.net=10.0.2.2/24,gw",
           "kiln.net=::1/64",
           "kiln.dns=",
           "kiln.dns=10.0.2.1,",
           "kiln.dns=example.com",
           "kiln.dns=1.1.1.1,2.2.2.2,3.3.3.3,4.4.4.4",
       }) {
    EXPECT_FALSE(ParseVmInitCmdline(bad)) << bad;
  }
  auto e = ParseVmInitCmdline("kiln.net=10.0.2.2/24,10.0.3.1");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code(), Errc::kInvalidArgument);
  EXPECT_NE(e.error().message().find("kiln.net=10.0.2.2/24,10.0.3.1"), std::string::npos)
      << e.error().message();
}

bool Has(const std::vector<std::string>& argv, const std::string& a, const std::string& b) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == a && argv[i + 1] == b) return true;
  }
  return false;
}

TEST(MicrovmTest, ArgvHasTheMachineKernelDisksAndSockets) {
  MicrovmConfig c;
  c.kernel = "/k/vmlinux";
  c.initrd = "/k/initrd";
  c.cmdline = "console=ttyS0";
  c.disks.push_back({"/d/root.qcow2", "qcow2", false});
  c.disks.push_back({"/d/ro.img", "raw", true});
  c.qmp_socket = "/run/q.sock";
  auto argv = MicrovmArgv(c);
  EXPECT_EQ(argv[0], "/usr/bin/qemu-system-x86_64");
  EXPECT_TRUE(Has(argv, "-kernel", "/k/vmlinux"));
  EXPECT_TRUE(Has(argv, "-initrd", "/k/initrd"));
  EXPECT_TRUE(Has(argv, "-append", "console=ttyS0"));
  EXPECT_TRUE(Has(argv, "-accel", "tcg,tb-size=64"));
  EXPECT_TRUE(Has(argv, "-drive", "id=disk0,file=/d/root.qcow2,format=qcow2,if=none,cache=unsafe"));
  EXPECT_TRUE(
      Has(argv, "-drive", "id=disk1,file=/d/ro.img,format=raw,if=none,cache=unsafe,read-only=on"));
  EXPECT_TRUE(Has(argv, "-chardev", "socket,id=qmp0,path=/run/q.sock,server=off"));
  EXPECT_TRUE(std::find(argv.begin(), argv.end(), "-no-reboot") != argv.end());
  EXPECT_TRUE(std::find(argv.begin(), argv.end(), "-nodefaults") != argv.end());
  EXPECT_TRUE(std::find(argv.begin(), argv.end(), "-cpu") == argv.end());
}

TEST(MicrovmTest, KernelCmdlineCarriesTscAndInit) {
  GuestCmdlineOptions o;
  o.tsc_khz = 2600000;
  o.extra = {"kiln.root=/dev/vda"};
  o.init = {"/bin/busybox", "uname", "-r"};
  std::string s = GuestKernelCmdline(o);
  EXPECT_NE(s.find("console=ttyS0"), std::string::npos);
  EXPECT_NE(s.find("tsc_early_khz=2600000 lpj=10400000"), std::string::npos);
  EXPECT_TRUE(s.ends_with(" kiln.root=/dev/vda -- /bin/busybox uname -r")) << s;
  auto parsed = ParseVmInitCmdline(s);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->init[0], "/bin/busybox");
}

TEST(MicrovmTest, HostTscIsReadFromCpuinfo) {
  auto khz = HostTscKhz();
  if (!khz) GTEST_SKIP() << khz.error().message();
  EXPECT_GT(*khz, 100000u);
}

}  // namespace
}  // namespace kiln::kilnd::vm
