// Boots Debian's kernel under QEMU TCG with kiln's initramfs and a tiny ext4 root holding a
// static busybox, and checks the guest's `uname -r` on the serial console. Then boots it the
// way kilnd does, with kiln-envd as the guest's PID 1 (agent disk, qcow2 overlay root, a tap
// in a test network namespace) and talks to the agent over the guest network. Privileged:
// needs root (apt-get download on the first run), QEMU and busybox-static.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "base/encoding.h"
#include "kilnd/net/guest_link.h"
#include "kilnd/net/netns.h"
#include "kilnd/runtime/vm/child_process.h"
#include "kilnd/runtime/vm/disk_image.h"
#include "kilnd/runtime/vm/file_io.h"
#include "kilnd/runtime/vm/guest_agent.h"
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

namespace bhttp = boost::beast::http;
using nlohmann::json;

// One HTTP/1.1 request to the guest's agent (10.0.2.2:49983) on a socket made inside `netns`,
// the only place from which the guest is reachable. Blocking, 30 s timeouts.
Result<bhttp::response<bhttp::string_body>> AgentCall(int netns, bhttp::verb verb,
                                                      const std::string& target,
                                                      const std::string& content_type,
                                                      const std::string& body) {
  KILN_ASSIGN_OR_RETURN(UniqueFd fd,
                        net::SocketInNetns(netns, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{30, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in guest{};
  guest.sin_family = AF_INET;
  guest.sin_port = htons(49983);
  inet_pton(AF_INET, "10.0.2.2", &guest.sin_addr);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&guest), sizeof guest) < 0) {
    return FailErrno("connect to the guest's 10.0.2.2:49983");
  }
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.assign(boost::asio::ip::tcp::v4(), fd.release(), ec);
  if (ec) return Fail(Errc::kInternal, "assign: " + ec.message());
  bhttp::request<bhttp::string_body> req{verb, target, 11};
  req.set(bhttp::field::host, "10.0.2.2:49983");
  req.set(bhttp::field::connection, "close");
  if (!content_type.empty()) req.set(bhttp::field::content_type, content_type);
  req.body() = body;
  req.prepare_payload();
  bhttp::write(s, req, ec);
  if (ec) return Fail(Errc::kUnavailable, "write " + target + ": " + ec.message());
  boost::beast::flat_buffer buf;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(s, buf, res, ec);
  if (ec) return Fail(Errc::kUnavailable, "read " + target + ": " + ec.message());
  return res;
}

// Runs `script` with the guest's /bin/sh on a pseudo-terminal (process.Process/Start, a
// Connect server stream in JSON) and returns what the terminal showed.
Result<std::string> GuestShell(int netns, const std::string& script) {
  json req = {{"process", {{"cmd", "/bin/sh"}, {"args", {"-c", script}}}},
              {"pty", {{"size", {{"cols", 200}, {"rows", 50}}}}}};
  std::string payload = req.dump();
  std::string envelope(5, '\0');
  for (int i = 0; i < 4; ++i) {
    envelope[1 + static_cast<size_t>(i)] = static_cast<char>(payload.size() >> (24 - 8 * i));
  }
  KILN_ASSIGN_OR_RETURN(auto res, AgentCall(netns, bhttp::verb::post, "/process.Process/Start",
                                            "application/connect+json", envelope + payload));
  if (res.result_int() != 200) {
    return Fail(Errc::kInternal, "Start: HTTP " + std::to_string(res.result_int()));
  }
  std::string_view body = res.body();
  std::string out;
  while (body.size() >= 5) {
    auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(body[i])); };
    uint32_t len = (b(1) << 24) | (b(2) << 16) | (b(3) << 8) | b(4);
    if (body.size() < 5 + len) break;
    json frame = json::parse(body.substr(5, len), nullptr, false);
    if (b(0) == 0 && frame.is_object() && frame["event"].contains("data") &&
        frame["event"]["data"].contains("pty")) {
      out += Base64Decode(frame["event"]["data"]["pty"].get<std::string>()).value_or("");
    } else if (b(0) != 0 && frame.is_object() && frame.contains("error")) {
      return Fail(Errc::kInternal, "Start: " + frame.dump());
    }
    body.remove_prefix(5 + len);
  }
  return out;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// kiln-vminit's failures end the VM with the step and errno text on the console: here
// kiln.net asks for eth0, but the VM has no NIC.
TEST_F(VmBootTest, VmInitFailsClearlyWithoutTheNic) {
  GuestKernelOptions kopts;
  kopts.cache_dir = testing::VmCacheDir();
  auto kernel = EnsureGuestKernel(kopts);
  ASSERT_TRUE(kernel) << kernel.error().message();
  InitramfsSpec ispec;
  ispec.vminit = testing::VmInitBinary();
  ispec.modules_dir = kernel->modules_dir;
  auto initramfs = BuildInitramfs(ispec);
  ASSERT_TRUE(initramfs) << initramfs.error().message();
  fs::path initrd = tmp_.path() / "initramfs.cpio";
  ASSERT_TRUE(WriteWholeFile(initrd, initramfs->archive, 0644));
  fs::path rootdir = tmp_.path() / "root";
  for (const char* d : {"bin", "dev", "proc", "sys"}) fs::create_directories(rootdir / d);
  fs::copy_file(kBusybox, rootdir / "bin/busybox");
  fs::path image = tmp_.path() / "root.ext4";
  TemplateImageOptions topts;
  topts.extra_bytes = 0;
  Status st = BuildTemplateImage(rootdir, image, topts);
  ASSERT_TRUE(st) << st.error().message();

  MicrovmConfig config;
  config.qemu = kQemu;
  config.kernel = kernel->vmlinux;
  config.initrd = initrd;
  config.disks.push_back({image, "raw", false});
  GuestCmdlineOptions cmdline;
  if (auto khz = HostTscKhz()) cmdline.tsc_khz = *khz;
  cmdline.extra = {"kiln.net=10.0.2.2/24,10.0.2.1"};
  cmdline.init = {"/bin/busybox", "echo", "init ran"};
  config.cmdline = GuestKernelCmdline(cmdline);
  std::vector<std::string> argv = MicrovmArgv(config);
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd out_r(p[0]), out_w(p[1]);
  sys::SpawnSpec spec;
  spec.path = argv[0];
  spec.argv = argv;
  spec.stdout_fd = out_w.get();
  spec.stderr_fd = out_w.get();
  auto qemu = ChildProcess::Start(spec);
  ASSERT_TRUE(qemu) << qemu.error().message();
  out_w.reset();
  const std::string want = "kiln-vminit: kiln.net is set but eth0 is missing (no NIC?): ";
  auto console = ReadUntil(out_r.get(), qemu->pidfd(), Clock::now() + std::chrono::seconds(60),
                           [&want](const std::string& text) { return Contains(text, want); });
  ASSERT_TRUE(console) << console.error().message();
  EXPECT_FALSE(Contains(*console, "init ran"));
  // The kernel panics (PID 1 exited) and -no-reboot ends QEMU.
  auto status = qemu->Wait(Clock::now() + std::chrono::seconds(30));
  ASSERT_TRUE(status) << status.error().message();
  EXPECT_TRUE(WIFEXITED(*status)) << DescribeWaitStatus(*status);
}

// kilnd's layout: the rootfs as a template image under a qcow2 overlay (vda), kiln-envd on
// the agent image (vdb, /.kiln), a tap in a network namespace (as net::CreateGuestLink makes
// it for a sandbox), kiln-vminit preparing the guest for the agent, the agent as PID 1.
void BootEnvdGuest(const fs::path& tmp, const fs::path& rootdir) {
  GuestKernelOptions kopts;
  kopts.cache_dir = testing::VmCacheDir();
  auto kernel = EnsureGuestKernel(kopts);
  ASSERT_TRUE(kernel) << kernel.error().message();
  InitramfsSpec ispec;
  ispec.vminit = testing::VmInitBinary();
  ispec.modules_dir = kernel->modules_dir;
  auto initramfs = BuildInitramfs(ispec);
  ASSERT_TRUE(initramfs) << initramfs.error().message();
  fs::path initrd = tmp / "initramfs.cpio";
  ASSERT_TRUE(WriteWholeFile(initrd, initramfs->archive, 0644));

  auto t0 = Clock::now();
  fs::path base = tmp / "base.ext4", overlay = tmp / "sandbox.qcow2";
  TemplateImageOptions topts;
  topts.extra_bytes = 32 << 20;
  Status st = BuildTemplateImage(rootdir, base, topts);
  ASSERT_TRUE(st) << st.error().message();
  auto t_template = Clock::now();
  st = CreateOverlay(base, "raw", overlay);
  ASSERT_TRUE(st) << st.error().message();
  fs::path agent = tmp / "agent.ext4";
  st = BuildAgentImage({{testing::EnvdBinary(), "envd", 0755}}, agent);
  ASSERT_TRUE(st) << st.error().message();
  auto t_agent = Clock::now();

  auto netns = net::NetNamespace::Create();
  ASSERT_TRUE(netns) << netns.error().message();
  auto tap = net::CreateGuestLink(netns->get(), net::GuestLinkConfig{});
  ASSERT_TRUE(tap) << tap.error().message();

  MicrovmConfig config;
  config.qemu = kQemu;
  config.kernel = kernel->vmlinux;
  config.initrd = initrd;
  config.disks.push_back({overlay, "qcow2", false});
  config.disks.push_back({agent, "raw", true});
  GuestCmdlineOptions cmdline;
  if (auto khz = HostTscKhz()) cmdline.tsc_khz = *khz;
  cmdline.extra = {"kiln.agent=/dev/vdb", "kiln.hostname=sandbox", "kiln.net=10.0.2.2/24,10.0.2.1",
                   "kiln.dns=10.0.2.1"};
  if (const char* extra = getenv("KILN_TEST_VM_CMDLINE")) cmdline.extra.push_back(extra);
  cmdline.init = {"/.kiln/envd", "--listen", "0.0.0.0", "--port", "49983"};
  config.cmdline = GuestKernelCmdline(cmdline);
  std::vector<std::string> argv = MicrovmArgv(config);
  argv.insert(argv.end(), {"-netdev", "tap,id=n0,fd=3", "-device", "virtio-net-device,netdev=n0"});

  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd out_r(p[0]), out_w(p[1]);
  sys::SpawnSpec spec;
  spec.path = argv[0];
  spec.argv = argv;
  spec.stdout_fd = out_w.get();
  spec.stderr_fd = out_w.get();
  spec.inherit_fds = {tap->get()};
  auto t_spawn = Clock::now();
  auto qemu = ChildProcess::Start(spec);
  ASSERT_TRUE(qemu) << qemu.error().message();
  out_w.reset();

  // The agent logs to the console once it listens; vminit's errors end up there too.
  auto console =
      ReadUntil(out_r.get(), qemu->pidfd(), t_spawn + std::chrono::seconds(90),
                [](const std::string& text) { return Contains(text, "kiln-envd listening"); });
  ASSERT_TRUE(console) << console.error().message();
  auto t_listening = Clock::now();
  if (getenv("KILN_TEST_VM_VERBOSE") != nullptr) std::printf("%s\n", console->c_str());
  EXPECT_FALSE(Contains(*console, "kiln-vminit:")) << *console;

  auto health = AgentCall(netns->get(), bhttp::verb::get, "/health", "", "");
  ASSERT_TRUE(health) << health.error().message();
  EXPECT_EQ(health->result_int(), 204);
  auto t_health = Clock::now();

  std::string entropy(64, '\0');
  ASSERT_EQ(getrandom(entropy.data(), entropy.size(), 0), 64);
  json init = {{"entropy", Base64Encode(entropy)}, {"envVars", {{"KILN_TEST", "1"}}}};
  auto res = AgentCall(netns->get(), bhttp::verb::post, "/init", "application/json", init.dump());
  ASSERT_TRUE(res) << res.error().message();
  EXPECT_EQ(res->result_int(), 204) << res->body();
  auto bad = AgentCall(netns->get(), bhttp::verb::post, "/init", "application/json",
                       R"({"entropy":"c2hvcnQ="})");
  ASSERT_TRUE(bad) << bad.error().message();
  EXPECT_EQ(bad->result_int(), 400);

  // What vminit set up, seen from a shell on a pseudo-terminal (so /dev/ptmx works).
  auto shell = GuestShell(
      netns->get(),
      "cat /proc/sys/kernel/hostname /etc/resolv.conf; ls -l /etc/resolv.conf; readlink /dev/ptmx; "
      "tty; echo PID1=$(cat /proc/1/comm); echo KILN_TEST=$KILN_TEST; "
      "cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6 /proc/net/route /proc/mounts; "
      "touch /root/written && echo WRITABLE");
  ASSERT_TRUE(shell) << shell.error().message();
  const std::string& out = *shell;
  if (getenv("KILN_TEST_VM_VERBOSE") != nullptr) std::printf("%s\n", out.c_str());
  EXPECT_TRUE(out.starts_with("sandbox\r\nnameserver 10.0.2.1\r\n")) << out;
  EXPECT_TRUE(Contains(out, "-rw-r--r-- ")) << out;  // a regular file now, not the symlink
  EXPECT_TRUE(Contains(out, "\r\npts/ptmx\r\n")) << out;
  EXPECT_TRUE(Contains(out, "\r\n/dev/pts/0\r\n")) << out;
  EXPECT_TRUE(Contains(out, "PID1=envd\r\n")) << out;
  EXPECT_TRUE(Contains(out, "KILN_TEST=1\r\n")) << out;
  EXPECT_TRUE(Contains(out, "\r\n1\r\n")) << out;                         // no IPv6 on eth0
  EXPECT_TRUE(Contains(out, "eth0\t00000000\t0102000A\t0003\t")) << out;  // default via .1
  EXPECT_TRUE(Contains(out, "eth0\t0002000A\t00000000\t0001\t")) << out;  // 10.0.2.0/24
  EXPECT_TRUE(Contains(out, "/dev/vda / ext4 rw,")) << out;
  EXPECT_TRUE(Contains(out, "/dev/vdb /.kiln ext4 ro,nosuid,nodev,")) << out;
  EXPECT_TRUE(Contains(out, "devpts /dev/pts devpts rw,nosuid,noexec,")) << out;
  EXPECT_TRUE(Contains(out, "gid=5,mode=620,ptmxmode=666")) << out;
  EXPECT_TRUE(Contains(out, "tmpfs /dev/shm tmpfs rw,nosuid,nodev,")) << out;
  EXPECT_TRUE(Contains(out, "tmpfs /run tmpfs rw,nosuid,nodev,")) << out;
  EXPECT_TRUE(Contains(out, "WRITABLE")) << out;

  // Commands run to their end through the agent (what the template snapshot's warm-up uses).
  auto deadline = Clock::now() + std::chrono::seconds(60);
  auto ran = RunGuestCommand(netns->get(), {"/bin/sh", "-c", "touch /tmp/ran"}, deadline);
  EXPECT_TRUE(ran) << ran.error().message();
  auto failed = RunGuestCommand(netns->get(), {"/bin/sh", "-c", "echo oops; exit 3"}, deadline);
  ASSERT_FALSE(failed);
  EXPECT_TRUE(Contains(failed.error().message(), "oops")) << failed.error().message();
  EXPECT_TRUE(Contains(failed.error().message(), "exit status 3")) << failed.error().message();
  auto missing = RunGuestCommand(netns->get(), {"/no/such/binary"}, deadline);
  EXPECT_FALSE(missing);
  auto seen = GuestShell(netns->get(), "ls /tmp/ran");
  ASSERT_TRUE(seen) << seen.error().message();
  EXPECT_TRUE(Contains(*seen, "/tmp/ran")) << *seen;

  // The agent's log so far (what is in the pipe now; no waiting): the RNG was reseeded, so
  // neither the EPERM note nor a failure.
  std::string more = *console;
  (void)ReadUntil(out_r.get(), -1, Clock::now(), [&more, &console](const std::string& text) {
    more = *console + text;
    return false;
  });
  EXPECT_FALSE(Contains(more, "reseed")) << more;

  std::printf(
      "template image %.3f s, overlay + agent image %.3f s; QEMU start -> envd listening "
      "%.3f s, -> /health answered %.3f s\n",
      Seconds(t_template - t0), Seconds(t_agent - t_template), Seconds(t_listening - t_spawn),
      Seconds(t_health - t_spawn));
  // The overlay QEMU wrote is consistent (QEMU holds its lock while it runs).
  qemu->Kill();
  auto check =
      RunTool({"/usr/bin/qemu-img", "check", overlay.string()}, "", std::chrono::seconds(30));
  EXPECT_TRUE(check) << (check ? "" : check.error().message());
}

TEST_F(VmBootTest, EnvdAnswersOverTheGuestNetwork) {
  if (access(testing::EnvdBinary().c_str(), X_OK) != 0) {
    GTEST_SKIP() << "no kiln-envd at " << testing::EnvdBinary();
  }
  // A small template: busybox, accounts, and a resolv.conf symlink for vminit to replace.
  fs::path rootdir = tmp_.path() / "root";
  for (const char* d : {"bin", "dev", "etc", "proc", "sys", "root", "run", "tmp"}) {
    fs::create_directories(rootdir / d);
  }
  fs::permissions(rootdir / "tmp", fs::perms::all | fs::perms::sticky_bit);
  fs::copy_file(kBusybox, rootdir / "bin/busybox");
  for (const char* applet : {"sh", "cat", "ls", "readlink", "tty", "touch"}) {
    fs::create_symlink("busybox", rootdir / "bin" / applet);
  }
  ASSERT_TRUE(WriteWholeFile(rootdir / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0644));
  ASSERT_TRUE(WriteWholeFile(rootdir / "etc/group", "root:x:0:\ntty:x:5:\n", 0644));
  fs::create_symlink("../run/resolv.conf", rootdir / "etc/resolv.conf");
  BootEnvdGuest(tmp_.path(), rootdir);
}

// The same with kiln's real base template (Debian bookworm minbase), when it is installed:
// $KILN_TEST_VM_ROOTFS, else /var/cache/kiln/templates/base/rootfs (only read).
TEST_F(VmBootTest, EnvdAnswersOnTheBaseTemplate) {
  if (access(testing::EnvdBinary().c_str(), X_OK) != 0) {
    GTEST_SKIP() << "no kiln-envd at " << testing::EnvdBinary();
  }
  fs::path rootfs = "/var/cache/kiln/templates/base/rootfs";
  if (const char* env = getenv("KILN_TEST_VM_ROOTFS"); env != nullptr && *env != '\0') {
    rootfs = env;
  }
  if (!fs::is_directory(rootfs)) GTEST_SKIP() << "no template rootfs at " << rootfs;
  BootEnvdGuest(tmp_.path(), rootfs);
}

}  // namespace
}  // namespace kiln::kilnd::vm
