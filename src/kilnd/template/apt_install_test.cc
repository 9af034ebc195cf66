#include "kilnd/template/apt_install.h"

#include <sys/mount.h>

#include <gtest/gtest.h>

#include <algorithm>

namespace kiln::kilnd::tmpl {
namespace {

TEST(AptInstallTest, SpecsRunTheTreesAptGetJailed) {
  AptInstallArgs args;
  args.rootfs = "/store/.build-x/rootfs";
  args.packages = {"python3-ipykernel", "nodejs"};
  std::vector<sys::SpawnSpec> specs = AptInstallSpecs(args);
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[0].argv, (std::vector<std::string>{"apt-get", "-q", "update"}));
  EXPECT_EQ(specs[1].argv, (std::vector<std::string>{"apt-get", "-q", "install", "-y",
                                                     "--no-install-recommends",
                                                     "python3-ipykernel", "nodejs"}));
  for (const sys::SpawnSpec& spec : specs) {
    EXPECT_EQ(spec.root, "/store/.build-x/rootfs");
    EXPECT_EQ(spec.path, "/usr/bin/apt-get");
    ASSERT_EQ(spec.mounts.size(), 3u);
    EXPECT_EQ(spec.mounts[0].target, "/store/.build-x/rootfs/proc");
    EXPECT_EQ(spec.mounts[0].fstype, "proc");
    EXPECT_EQ(spec.mounts[1].source, "/dev");
    EXPECT_TRUE(spec.mounts[1].flags & MS_BIND);
    EXPECT_EQ(spec.mounts[2].source, "/etc/resolv.conf");
    EXPECT_EQ(spec.mounts[2].target, "/store/.build-x/rootfs/etc/resolv.conf");
    EXPECT_NE(std::ranges::find(spec.env, "DEBIAN_FRONTEND=noninteractive"), spec.env.end());
  }
}

TEST(AptInstallTest, NothingToInstallRunsNothing) {
  AptInstallArgs args;
  args.rootfs = "/nonexistent";
  EXPECT_TRUE(RunAptInstall(args, nullptr, nullptr));
}

TEST(AptInstallTest, ProgressFollowsDownloadsUnpacksAndSetUps) {
  AptProgress p(2, 10, 90);
  EXPECT_FALSE(p.Feed("Reading package lists..."));
  auto a = p.Feed("Get:1 http://deb.debian.org/debian bookworm/main amd64 libzmq5 amd64 4.3.4-6 [273 kB]");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->phase, "download");
  EXPECT_EQ(a->percent, 26);  // 10 + 80 * 200/1000
  auto b = p.Feed("Unpacking libzmq5:amd64 (4.3.4-6) ...");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->phase, "unpack");
  EXPECT_EQ(b->percent, 50);  // 10 + 80 * 500/1000
  p.Feed("Setting up libzmq5:amd64 (4.3.4-6) ...");
  auto c = p.Feed("Setting up nodejs (18.20.4) ...");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->phase, "configure");
  EXPECT_EQ(c->percent, 90);
  auto e = p.Feed("E: Unable to locate package nope");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->detail, "E: Unable to locate package nope");
  EXPECT_EQ(e->percent, 90);
}

}  // namespace
}  // namespace kiln::kilnd::tmpl
