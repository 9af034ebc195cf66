#include "kilnd/runtime/vm/microvm.h"

#include <charconv>

#include "kilnd/runtime/vm/file_io.h"

namespace kiln::kilnd::vm {

std::vector<std::string> MicrovmArgv(const MicrovmConfig& c) {
  std::vector<std::string> a = {c.qemu.string()};
  auto add = [&a](std::initializer_list<std::string> items) { a.insert(a.end(), items); };
  add({"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"});
  // x-option-roms=off and no PIT/PIC: ~60 ms less boot (A7p). rtc stays on: the kernel
  // waits 2 s for a missing RTC.
  std::string machine = "microvm,x-option-roms=off,isa-serial=on,pit=off,pic=off,rtc=on";
  if (!c.memory_file.empty()) machine += ",memory-backend=mem";
  add({"-M", machine});
  add({"-accel", c.accel == "tcg" ? "tcg,tb-size=64" : c.accel});
  if (!c.cpu.empty()) add({"-cpu", c.cpu});
  add({"-m", std::to_string(c.memory_mib), "-smp", std::to_string(c.cpus)});
  if (!c.memory_file.empty()) {
    add({"-object", "memory-backend-file,id=mem,size=" + std::to_string(c.memory_mib) +
                        "M,mem-path=" + c.memory_file.string() +
                        (c.memory_shared ? ",share=on" : ",share=off")});
  }
  // A snapshot taken while the guest runs restores into a running guest (the global state
  // would otherwise record the source's post-migration "paused").
  add({"-global", "migration.store-global-state=off"});
  add({"-kernel", c.kernel.string(), "-initrd", c.initrd.string(), "-append", c.cmdline});
  for (size_t i = 0; i < c.disks.size(); ++i) {
    const MicrovmDisk& d = c.disks[i];
    std::string id = "disk" + std::to_string(i);
    add({"-drive",
         "id=" + id + ",file=" + d.file.string() + ",format=" + d.format + ",if=none,cache=unsafe" +
             (d.read_only ? ",read-only=on" : ""),
         "-device", "virtio-blk-device,drive=" + id});
  }
  if (c.rng) {
    add({"-object", "rng-builtin,id=rng0", "-device", "virtio-rng-device,rng=rng0"});
  }
  if (c.tap_fd >= 0) {
    // guest_announce=off: a restored guest is not asked to announce itself on its link
    // (gratuitous ARP, link notifications). It is alone behind its own tap, and every restore
    // would run (and under TCG translate) that kernel work for nothing.
    add({"-netdev", "tap,id=net0,fd=" + std::to_string(c.tap_fd), "-device",
         "virtio-net-device,netdev=net0,mac=52:54:00:6b:69:6c,guest_announce=off"});
  }
  if (c.serial == "stdio") {
    add({"-chardev", "stdio,id=con0,signal=off", "-serial", "chardev:con0"});
  } else if (c.serial == "null") {
    add({"-chardev", "null,id=con0", "-serial", "chardev:con0"});
  } else if (c.serial.starts_with("file:")) {
    add({"-chardev", "file,id=con0,path=" + c.serial.substr(5), "-serial", "chardev:con0"});
  } else {
    add({"-chardev", "socket,id=con0,path=" + c.serial + ",server=off", "-serial", "chardev:con0"});
  }
  if (!c.qmp_socket.empty()) {
    add({"-chardev", "socket,id=qmp0,path=" + c.qmp_socket.string() + ",server=off", "-mon",
         "chardev=qmp0,mode=control"});
  }
  if (c.incoming_defer) add({"-incoming", "defer"});
  if (c.seccomp) {
    add({"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"});
  }
  return a;
}

std::string GuestKernelCmdline(const GuestCmdlineOptions& o) {
  std::string s =
      "console=ttyS0 panic=-1 quiet loglevel=0 mitigations=off no_timer_check tsc=reliable "
      "random.trust_cpu=on i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd "
      "cryptomgr.notests";
  if (o.tsc_khz != 0) {
    s += " tsc_early_khz=" + std::to_string(o.tsc_khz) +
         " lpj=" + std::to_string(uint64_t{o.tsc_khz} * 4);
  }
  for (const std::string& e : o.extra) s += " " + e;
  if (!o.init.empty()) {
    s += " --";
    for (const std::string& w : o.init) s += " " + w;
  }
  return s;
}

Result<uint32_t> HostTscKhz() {
  KILN_ASSIGN_OR_RETURN(std::string text, ReadWholeFile("/proc/cpuinfo", 1u << 20));
  size_t at = text.find("cpu MHz");
  if (at == std::string::npos) return Fail(Errc::kNotFound, "no 'cpu MHz' in /proc/cpuinfo");
  size_t colon = text.find(':', at);
  if (colon == std::string::npos) return Fail(Errc::kNotFound, "malformed /proc/cpuinfo");
  size_t start = text.find_first_not_of(' ', colon + 1);
  double mhz = 0;
  auto [p, ec] = std::from_chars(text.data() + start, text.data() + text.size(), mhz);
  if (ec != std::errc() || mhz <= 0 || mhz > 100000) {
    return Fail(Errc::kNotFound, "malformed cpu MHz in /proc/cpuinfo");
  }
  return static_cast<uint32_t>(mhz * 1000);
}

}  // namespace kiln::kilnd::vm
