// The vm runtime's command-line pieces for snapshots and restores (MicrovmArgv options beyond
// a plain boot; config_test.cc covers the boot itself).

#include <gtest/gtest.h>

#include <algorithm>

#include "kilnd/runtime/vm/microvm.h"
#include "kilnd/runtime/vm/template_snapshot.h"

namespace kiln::kilnd::vm {
namespace {

bool HasPair(const std::vector<std::string>& argv, const std::string& a, const std::string& b) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == a && argv[i + 1] == b) return true;
  }
  return false;
}

bool Contains(const std::vector<std::string>& argv, const std::string& a) {
  return std::find(argv.begin(), argv.end(), a) != argv.end();
}

TEST(MicrovmSnapshotArgvTest, FileBackedRamTapIncomingAndConsole) {
  MicrovmConfig c;
  c.memory_mib = 512;
  c.memory_file = "/s/ram";
  c.memory_shared = false;
  c.tap_fd = 3;
  c.incoming_defer = true;
  c.serial = "null";
  c.cpu = "max";
  auto argv = MicrovmArgv(c);
  EXPECT_TRUE(HasPair(argv, "-M", "microvm,x-option-roms=off,isa-serial=on,pit=off,pic=off,rtc=on,"
                                  "memory-backend=mem"));
  EXPECT_TRUE(HasPair(argv, "-object", "memory-backend-file,id=mem,size=512M,mem-path=/s/ram,share=off"));
  EXPECT_TRUE(HasPair(argv, "-netdev", "tap,id=net0,fd=3"));
  EXPECT_TRUE(HasPair(argv, "-device", "virtio-net-device,netdev=net0,mac=52:54:00:6b:69:6c,guest_announce=off"));
  EXPECT_TRUE(HasPair(argv, "-incoming", "defer"));
  EXPECT_TRUE(HasPair(argv, "-chardev", "null,id=con0"));
  EXPECT_TRUE(HasPair(argv, "-cpu", "max"));
  // A snapshot of a running guest restores running.
  EXPECT_TRUE(HasPair(argv, "-global", "migration.store-global-state=off"));

  c.memory_shared = true;
  c.serial = "file:/s/console.log";
  c.tap_fd = -1;
  c.incoming_defer = false;
  argv = MicrovmArgv(c);
  EXPECT_TRUE(HasPair(argv, "-object", "memory-backend-file,id=mem,size=512M,mem-path=/s/ram,share=on"));
  EXPECT_TRUE(HasPair(argv, "-chardev", "file,id=con0,path=/s/console.log"));
  EXPECT_FALSE(Contains(argv, "-netdev"));
  EXPECT_FALSE(Contains(argv, "-incoming"));

  c.memory_file.clear();
  argv = MicrovmArgv(c);
  EXPECT_TRUE(std::none_of(argv.begin(), argv.end(), [](const std::string& a) {
    return a.starts_with("memory-backend-file");
  }));
  EXPECT_TRUE(HasPair(argv, "-M", "microvm,x-option-roms=off,isa-serial=on,pit=off,pic=off,rtc=on"));
}

TEST(GuestCmdlineTest, AgentDiskNetworkDnsAndHostname) {
  std::string c = GuestCmdline();
  EXPECT_NE(c.find("kiln.agent=/dev/vdb"), std::string::npos) << c;
  EXPECT_NE(c.find("kiln.net=10.0.2.2/24,10.0.2.1"), std::string::npos) << c;
  EXPECT_NE(c.find("kiln.dns=10.0.2.1"), std::string::npos) << c;
  EXPECT_NE(c.find("kiln.hostname=sandbox"), std::string::npos) << c;
}

TEST(SnapshotKeyTest, ChangesWithWhatShapesTheGuest) {
  SnapshotBuild b;
  b.template_name = "base";
  b.rootfs = "/nonexistent/base/rootfs";
  b.machine.memory_mib = 512;
  b.initrd_hash = "abc";
  auto k1 = SnapshotKey(b);
  ASSERT_TRUE(k1) << k1.error().message();
  EXPECT_EQ(*SnapshotKey(b), *k1);  // stable
  SnapshotBuild more_ram = b;
  more_ram.machine.memory_mib = 1024;
  EXPECT_NE(*SnapshotKey(more_ram), *k1);
  SnapshotBuild other_initrd = b;
  other_initrd.initrd_hash = "abd";
  EXPECT_NE(*SnapshotKey(other_initrd), *k1);
  SnapshotBuild with_service = b;
  with_service.service = InstanceSpec::Service{{"/.kiln/interp", "--port", "49999"}, 49999, "/ready"};
  EXPECT_NE(*SnapshotKey(with_service), *k1);
  SnapshotBuild other_cpu = b;
  other_cpu.machine.cpu = "qemu64";
  EXPECT_NE(*SnapshotKey(other_cpu), *k1);
  // The host's TSC reading in the kernel command line does not shape the guest's memory.
  SnapshotBuild tsc = b;
  tsc.machine.cmdline = "tsc_early_khz=2600000";
  EXPECT_EQ(*SnapshotKey(tsc), *k1);
}

}  // namespace
}  // namespace kiln::kilnd::vm
