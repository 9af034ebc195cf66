#include "kilnd/runtime/vm/vminit.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/mount.h>
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

Status Run() {
  KILN_TRY(MountFs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"));
  AttachConsole();
  KILN_TRY(MountFs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
  KILN_TRY(MountFs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
  KILN_ASSIGN_OR_RETURN(std::string cmdline, ReadSmall("/proc/cmdline"));
  KILN_ASSIGN_OR_RETURN(VmInitConfig config, ParseVmInitCmdline(cmdline));
  KILN_TRY(LoadModules());
  KILN_TRY(WaitForDevice(config.root_device, config.wait));
  KILN_TRY(SwitchRoot(config));
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
