#include "kilnd/runtime/vm/vminit.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "base/unique_fd.h"

namespace kiln::kilnd::vm {
namespace {

using Clock = std::chrono::steady_clock;

void Say(std::string_view msg) {
  std::string line = "kiln-vminit: " + std::string(msg) + "\n";
  [[maybe_unused]] ssize_t n = write(2, line.data(), line.size());
}

std::vector<std::string_view> SplitSpaces(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    size_t start = s.find_first_not_of(" \t\n");
    if (start == std::string_view::npos) break;
    s.remove_prefix(start);
    size_t end = s.find_first_of(" \t\n");
    out.push_back(s.substr(0, end));
    if (end == std::string_view::npos) break;
    s.remove_prefix(end);
  }
  return out;
}

Status MountFs(const char* source, const char* target, const char* type, unsigned long flags,
               const char* data) {
  if (mkdir(target, 0755) < 0 && errno != EEXIST) return FailErrno(std::string("mkdir ") + target);
  if (mount(source, target, type, flags, data) < 0) {
    return FailErrno(std::string("mount ") + type + " on " + target);
  }
  return {};
}

// The kernel opened /dev/console for us if the initramfs had the node; make sure anyway.
void AttachConsole() {
  int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return;
  for (int i = 0; i < 3; ++i) {
    if (fcntl(i, F_GETFD) < 0) dup2(fd, i);
  }
  if (fd > 2) close(fd);
}

Result<std::string> ReadSmall(const char* path) {
  UniqueFd fd(open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return FailErrno(std::string("open ") + path);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno(std::string("read ") + path);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (1u << 20))
      return Fail(Errc::kResourceExhausted, std::string(path) + " too large");
  }
}

Status LoadModules() {
  KILN_ASSIGN_OR_RETURN(std::string list,
                        ReadSmall((std::string("/") + kVmInitModuleList).c_str()));
  for (std::string_view rel : SplitSpaces(list)) {
    std::string path = "/" + std::string(rel);
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return FailErrno("open " + path);
    if (syscall(SYS_finit_module, fd.get(), "", 0) < 0 && errno != EEXIST) {
      return FailErrno("finit_module " + path);
    }
  }
  return {};
}

// devtmpfs creates the node from a kernel thread once the disk is probed: watch /dev for it.
Status WaitForDevice(const std::string& device, std::chrono::seconds wait) {
  UniqueFd in(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!in) return FailErrno("inotify_init1");
  std::string dir = device.substr(0, device.rfind('/'));
  if (dir.empty()) dir = "/";
  if (inotify_add_watch(in.get(), dir.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
    return FailErrno("inotify_add_watch " + dir);
  }
  Clock::time_point deadline = Clock::now() + wait;
  struct stat st {};
  while (stat(device.c_str(), &st) < 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      return Fail(Errc::kTimeout, "no " + device + " after " + std::to_string(wait.count()) + " s");
    pollfd p{in.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) return FailErrno("poll");
    char buf[4096];
    while (read(in.get(), buf, sizeof buf) > 0) {
    }
  }
  return {};
}

// Deletes the initramfs's files (they are RAM), staying on its filesystem: the mounts below
// it (the new root, /dev, /proc, /sys) are skipped. Best effort, like switch_root.
void RemoveTree(int dirfd, dev_t rootdev) {
  DIR* dir = fdopendir(dirfd);
  if (dir == nullptr) {
    close(dirfd);
    return;
  }
  while (dirent* e = readdir(dir)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat st {};
    if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != rootdev) continue;
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) RemoveTree(sub, rootdev);
      struct stat again {};
      if (fstatat(dirfd, e->d_name, &again, AT_SYMLINK_NOFOLLOW) == 0 && again.st_dev == rootdev) {
        unlinkat(dirfd, e->d_name, AT_REMOVEDIR);  // fails (EBUSY/ENOTEMPTY) for mount points
      }
    } else {
      unlinkat(dirfd, e->d_name, 0);
    }
  }
  closedir(dir);
}

// Moves an API mount into the new root, or drops it when the new root lacks the directory.
void MoveMount(const char* from, const std::string& to) {
  struct stat st {};
  if (stat(to.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
      mount(from, to.c_str(), nullptr, MS_MOVE, nullptr) == 0) {
    return;
  }
  umount2(from, MNT_DETACH);
}

Status SwitchRoot(const VmInitConfig& config) {
  std::string newroot = std::string("/") + kVmInitNewRoot;
  unsigned long flags = config.root_readonly ? MS_RDONLY : 0;
  KILN_TRY(MountFs(config.root_device.c_str(), newroot.c_str(), config.root_fstype.c_str(), flags,
                   config.root_data.empty() ? nullptr : config.root_data.c_str()));
  struct stat root {};
  if (stat("/", &root) < 0) return FailErrno("stat /");
  int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) RemoveTree(fd, root.st_dev);
  MoveMount("/dev", newroot + "/dev");
  MoveMount("/proc", newroot + "/proc");
  MoveMount("/sys", newroot + "/sys");
  if (chdir(newroot.c_str()) < 0) return FailErrno("chdir " + newroot);
  if (mount(".", "/", nullptr, MS_MOVE, nullptr) < 0) return FailErrno("move the new root to /");
  if (chroot(".") < 0) return FailErrno("chroot");
  if (chdir("/") < 0) return FailErrno("chdir /");
  return {};
}

// Reads a dotted IPv4 address (host byte order).
std::optional<uint32_t> ParseIpv4(std::string_view text) {
  if (text.empty() || text.size() > 15) return std::nullopt;
  std::string z(text);
  in_addr a{};
  if (inet_pton(AF_INET, z.c_str(), &a) != 1) return std::nullopt;
  return ntohl(a.s_addr);
}

std::string FormatIpv4(uint32_t host_order) {
  in_addr a{htonl(host_order)};
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

uint32_t PrefixMask(int prefix) { return prefix <= 0 ? 0 : ~uint32_t{0} << (32 - prefix); }

// "10.0.2.2/24,10.0.2.1" or "10.0.2.2/24".
Result<VmInitNet> ParseNet(std::string_view value) {
  auto bad = [&](const char* why) {
    return Fail(Errc::kInvalidArgument, "kiln.net=" + std::string(value) + ": " + why);
  };
  VmInitNet net;
  std::string_view cidr = value, gw;
  if (size_t comma = value.find(','); comma != std::string_view::npos) {
    cidr = value.substr(0, comma);
    gw = value.substr(comma + 1);
    if (gw.empty()) return bad("empty gateway");
  }
  size_t slash = cidr.find('/');
  if (slash == std::string_view::npos) return bad("want <address>/<prefix>[,<gateway>]");
  auto address = ParseIpv4(cidr.substr(0, slash));
  if (!address) return bad("not an IPv4 address");
  std::string_view plen = cidr.substr(slash + 1);
  int prefix = 0;
  auto [p, ec] = std::from_chars(plen.data(), plen.data() + plen.size(), prefix);
  if (ec != std::errc() || p != plen.data() + plen.size() || prefix < 1 || prefix > 30) {
    return bad("the prefix must be 1..30");
  }
  uint32_t mask = PrefixMask(prefix);
  if ((*address & ~mask) == 0 || (*address & ~mask) == ~mask) {
    return bad("the address is the subnet's network or broadcast address");
  }
  net.address = *address;
  net.prefix = prefix;
  if (!gw.empty()) {
    auto gateway = ParseIpv4(gw);
    if (!gateway) return bad("the gateway is not an IPv4 address");
    if ((*gateway & mask) != (*address & mask) || *gateway == *address) {
      return bad("the gateway must be another address in the subnet");
    }
    net.gateway = *gateway;
  }
  return net;
}

// RFC 1123 host name: labels of letters, digits and '-', dots between them, at most 64 bytes.
bool IsHostname(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '.' || name.back() == '.') return false;
  char prev = '.';
  for (char c : name) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (c == '.') {
      if (prev == '.' || prev == '-') return false;
    } else if (c == '-') {
      if (prev == '.') return false;
    } else if (!alnum) {
      return false;
    }
    prev = c;
  }
  return prev != '-';
}

// The agent disk, read-only, at /.kiln of the new root (created there if missing).
Status MountAgent(const std::string& device) {
  if (mkdir(kVmInitAgentDir, 0755) < 0 && errno != EEXIST) {
    return FailErrno(std::string("mkdir ") + kVmInitAgentDir);
  }
  if (mount(device.c_str(), kVmInitAgentDir, "ext4", MS_RDONLY | MS_NODEV | MS_NOSUID, nullptr) <
      0) {
    return FailErrno("mount " + device + " on " + kVmInitAgentDir);
  }
  return {};
}

// What the ns runtime gives kiln-envd besides /proc and /sys: a private devpts with a usable
// /dev/ptmx, /dev/shm and /run. /dev is the devtmpfs moved from the initramfs.
Status MountRuntimeDirs() {
  KILN_TRY(MountFs("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                   "newinstance,ptmxmode=0666,mode=0620,gid=5"));
  // devtmpfs's /dev/ptmx (5,2) would also find /dev/pts, but a link says where it goes.
  if (unlink("/dev/ptmx") < 0 && errno != ENOENT) return FailErrno("unlink /dev/ptmx");
  if (symlink("pts/ptmx", "/dev/ptmx") < 0) return FailErrno("symlink /dev/ptmx");
  static const char* const kLinks[][2] = {
      {"/proc/self/fd", "/dev/fd"},
      {"/proc/self/fd/0", "/dev/stdin"},
      {"/proc/self/fd/1", "/dev/stdout"},
      {"/proc/self/fd/2", "/dev/stderr"},
  };
  for (const auto& link : kLinks) {
    if (symlink(link[0], link[1]) < 0 && errno != EEXIST) {
      return FailErrno(std::string("symlink ") + link[1]);
    }
  }
  KILN_TRY(MountFs("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));
  KILN_TRY(MountFs("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755"));
  return {};
}

Status SetFlags(int sock, const char* ifname, short add) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
  if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) return FailErrno(std::string("get flags of ") + ifname);
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | add);
  if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) return FailErrno(std::string("bring up ") + ifname);
  return {};
}

sockaddr_in Inet(uint32_t host_order) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(host_order);
  return sin;
}

// lo up; with kiln.net also eth0: address, netmask, up, default route. Plain ioctls, so the
// static binary needs no netlink code.
Status ConfigureNetwork(const std::optional<VmInitNet>& net) {
  UniqueFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return FailErrno("socket AF_INET");
  KILN_TRY(SetFlags(sock.get(), "lo", IFF_UP));
  if (!net) return {};
  const char* eth = kVmInitNetIf;
  if (if_nametoindex(eth) == 0) {
    return FailErrno(std::string("kiln.net is set but ") + eth + " is missing (no NIC?)");
  }
  // Before the link comes up, so it never gets a link-local address or sends solicitations.
  std::string v6 = std::string("/proc/sys/net/ipv6/conf/") + eth + "/disable_ipv6";
  if (UniqueFd f(open(v6.c_str(), O_WRONLY | O_CLOEXEC)); f) {
    if (write(f.get(), "1", 1) != 1) return FailErrno("write " + v6);
  } else if (errno != ENOENT) {
    return FailErrno("open " + v6);
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, eth, IFNAMSIZ - 1);
  sockaddr_in addr = Inet(net->address);
  std::memcpy(&ifr.ifr_addr, &addr, sizeof addr);
  std::string where =
      std::string(eth) + " " + FormatIpv4(net->address) + "/" + std::to_string(net->prefix);
  if (ioctl(sock.get(), SIOCSIFADDR, &ifr) < 0) return FailErrno("set address of " + where);
  sockaddr_in mask = Inet(PrefixMask(net->prefix));
  std::memcpy(&ifr.ifr_netmask, &mask, sizeof mask);
  if (ioctl(sock.get(), SIOCSIFNETMASK, &ifr) < 0) return FailErrno("set netmask of " + where);
  KILN_TRY(SetFlags(sock.get(), eth, IFF_UP));
  if (net->gateway) {
    rtentry rt{};
    sockaddr_in any = Inet(0), gw = Inet(*net->gateway);
    std::memcpy(&rt.rt_dst, &any, sizeof any);
    std::memcpy(&rt.rt_genmask, &any, sizeof any);
    std::memcpy(&rt.rt_gateway, &gw, sizeof gw);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    char dev[IFNAMSIZ] = {};
    std::strncpy(dev, eth, IFNAMSIZ - 1);
    rt.rt_dev = dev;
    if (ioctl(sock.get(), SIOCADDRT, &rt) < 0) {
      return FailErrno("default route via " + FormatIpv4(*net->gateway));
    }
  }
  return {};
}

// /etc/resolv.conf as a regular file; rename() replaces a symlink there, not its target.
Status WriteResolvConf(const std::vector<std::string>& servers) {
  std::string text;
  for (const std::string& s : servers) text += "nameserver " + s + "\n";
  if (mkdir("/etc", 0755) < 0 && errno != EEXIST) return FailErrno("mkdir /etc");
  const char* tmp = "/etc/.resolv.conf.kiln";
  (void)unlink(tmp);
  UniqueFd f(open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!f) return FailErrno(std::string("create ") + tmp);
  if (write(f.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return FailErrno(std::string("write ") + tmp);
  }
  if (fchmod(f.get(), 0644) < 0) return FailErrno(std::string("chmod ") + tmp);
  f.reset();
  if (rename(tmp, "/etc/resolv.conf") < 0) return FailErrno("rename to /etc/resolv.conf");
  return {};
}

Status PrepareGuest(const VmInitConfig& config) {
  if (!config.agent_device.empty()) KILN_TRY(MountAgent(config.agent_device));
  KILN_TRY(MountRuntimeDirs());
  if (!config.hostname.empty() && sethostname(config.hostname.data(), config.hostname.size()) < 0) {
    return FailErrno("sethostname " + config.hostname);
  }
  KILN_TRY(ConfigureNetwork(config.net));
  if (!config.dns.empty()) KILN_TRY(WriteResolvConf(config.dns));
  return {};
}

Status Run() {
  KILN_TRY(MountFs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"));
  AttachConsole();
  KILN_TRY(MountFs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
  KILN_TRY(MountFs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
  KILN_ASSIGN_OR_RETURN(std::string cmdline, ReadSmall("/proc/cmdline"));
  KILN_ASSIGN_OR_RETURN(VmInitConfig config, ParseVmInitCmdline(cmdline));
  KILN_TRY(LoadModules());
  KILN_TRY(WaitForDevice(config.root_device, config.wait));
  if (!config.agent_device.empty()) KILN_TRY(WaitForDevice(config.agent_device, config.wait));
  KILN_TRY(SwitchRoot(config));
  KILN_TRY(PrepareGuest(config));
  std::vector<char*> argv;
  for (std::string& arg : config.init) argv.push_back(arg.data());
  argv.push_back(nullptr);
  char path_env[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  char home_env[] = "HOME=/";
  char term_env[] = "TERM=linux";
  char* envp[] = {path_env, home_env, term_env, nullptr};
  execve(argv[0], argv.data(), envp);
  return FailErrno("exec " + config.init[0]);
}

}  // namespace

Result<VmInitConfig> ParseVmInitCmdline(std::string_view cmdline) {
  VmInitConfig config;
  std::vector<std::string_view> words = SplitSpaces(cmdline);
  for (size_t i = 0; i < words.size(); ++i) {
    std::string_view w = words[i];
    if (w == "--") {
      if (i + 1 < words.size())
        config.init.assign(words.begin() + static_cast<long>(i) + 1, words.end());
      break;
    }
    size_t eq = w.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view key = w.substr(0, eq), value = w.substr(eq + 1);
    if (key == "kiln.root") {
      if (!value.starts_with("/dev/"))
        return Fail(Errc::kInvalidArgument, "kiln.root must be /dev/...");
      config.root_device = std::string(value);
    } else if (key == "kiln.rootfstype") {
      config.root_fstype = std::string(value);
    } else if (key == "kiln.rootflags") {
      config.root_data.clear();
      config.root_readonly = false;
      std::string_view rest = value;
      while (!rest.empty()) {
        size_t c = rest.find(',');
        std::string_view f = rest.substr(0, c);
        if (f == "ro") {
          config.root_readonly = true;
        } else if (f == "rw") {
          config.root_readonly = false;
        } else if (!f.empty()) {
          if (!config.root_data.empty()) config.root_data += ',';
          config.root_data += f;
        }
        if (c == std::string_view::npos) break;
        rest.remove_prefix(c + 1);
      }
    } else if (key == "kiln.agent") {
      if (!value.starts_with("/dev/") || value.size() == 5)
        return Fail(Errc::kInvalidArgument, "kiln.agent must be /dev/...");
      config.agent_device = std::string(value);
    } else if (key == "kiln.hostname") {
      if (!IsHostname(value)) {
        return Fail(Errc::kInvalidArgument, "kiln.hostname=" + std::string(value) +
                                                ": not a host name (letters, digits, '-', '.')");
      }
      config.hostname = std::string(value);
    } else if (key == "kiln.net") {
      KILN_ASSIGN_OR_RETURN(VmInitNet net, ParseNet(value));
      config.net = net;
    } else if (key == "kiln.dns") {
      config.dns.clear();
      std::string_view rest = value;
      for (;;) {
        size_t c = rest.find(',');
        std::string_view one = rest.substr(0, c);
        auto ip = ParseIpv4(one);
        if (!ip) {
          return Fail(Errc::kInvalidArgument,
                      "kiln.dns=" + std::string(value) + ": not a list of IPv4 addresses");
        }
        config.dns.push_back(FormatIpv4(*ip));
        if (c == std::string_view::npos) break;
        rest.remove_prefix(c + 1);
      }
      if (config.dns.size() > 3) {
        return Fail(Errc::kInvalidArgument, "kiln.dns: at most 3 nameservers");
      }
    } else if (key == "kiln.wait") {
      unsigned secs = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), secs);
      if (ec != std::errc() || p != value.data() + value.size() || secs == 0 || secs > 3600) {
        return Fail(Errc::kInvalidArgument, "kiln.wait must be 1..3600 seconds");
      }
      config.wait = std::chrono::seconds(secs);
    }
  }
  if (config.init.empty() || !config.init[0].starts_with("/")) {
    return Fail(Errc::kInvalidArgument, "the init after -- must be an absolute path");
  }
  return config;
}

int VmInitMain() {
  Status st = Run();
  Say(st ? "exec returned" : st.error().message());
  return 1;
}

}  // namespace kiln::kilnd::vm
