#pragma once

// The QEMU command line of a vm-runtime guest: the `microvm` machine (ACPI on, so the
// kernel finds the virtio-mmio transports through the DSDT), the uncompressed kernel booted
// through PVH, the tweaks measured in /work/shared/notes/measured-qemu.md §1, and only the
// devices asked for. Also the kernel command line.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"

namespace kiln::kilnd::vm {

struct MicrovmDisk {
  std::filesystem::path file;
  std::string format = "raw";  // or "qcow2"
  bool read_only = false;
};

struct MicrovmConfig {
  std::filesystem::path qemu = "/usr/bin/qemu-system-x86_64";
  // "tcg" or "kvm".
  std::string accel = "tcg";
  // -cpu; empty: QEMU's default (qemu64), which boots faster under TCG than "max".
  std::string cpu;
  uint32_t memory_mib = 256;
  uint32_t cpus = 1;
  std::filesystem::path kernel;  // the ELF vmlinux
  std::filesystem::path initrd;
  std::string cmdline;             // GuestKernelCmdline(...)
  std::vector<MicrovmDisk> disks;  // virtio-blk-device each: /dev/vda, /dev/vdb, ...
  // The serial console (ttyS0): "stdio" (QEMU's stdout; stdin is not read), "null"
  // (discarded), "file:PATH" (appended to PATH), or a path of a unix socket QEMU connects to.
  std::string serial = "stdio";
  // Guest RAM from a file (memory-backend-file) instead of anonymous memory: shared, the
  // guest writes into the file (a template boot whose RAM a snapshot keeps); private, the
  // file's pages are mapped copy-on-write (a sandbox restored from that snapshot). Empty: -m.
  std::filesystem::path memory_file;
  bool memory_shared = false;
  // A virtio-net NIC on a tap device whose descriptor QEMU inherits as this fd number
  // (-netdev tap,fd=N, no vnet header); -1: no NIC. Its MAC is fixed: every guest sits alone
  // in its own network namespace.
  int tap_fd = -1;
  // Start waiting for an incoming migration (-incoming defer): the guest does not run until
  // QMP migrate-incoming has loaded a snapshot into it.
  bool incoming_defer = false;
  // A unix socket listening on the host to which QEMU connects its QMP monitor (QEMU is the
  // client, so there is no race with QEMU creating a socket); empty: no QMP.
  std::filesystem::path qmp_socket;
  // A virtio-rng device (entropy from the host's getrandom).
  bool rng = true;
  // -sandbox on with everything but what a running VM needs denied.
  bool seccomp = true;
};

// The argv (argv[0] = config.qemu). Ends the process when the guest reboots or panics
// (-no-reboot), never opens a window, reads no user config and adds no default devices.
std::vector<std::string> MicrovmArgv(const MicrovmConfig& config);

struct GuestCmdlineOptions {
  // Host TSC frequency for tsc_early_khz=: without it the guest's calibration can hang under
  // CPU contention (microvm has no HPET/PM timer). 0: omitted.
  uint32_t tsc_khz = 0;
  std::vector<std::string> extra;  // appended before "--"
  std::vector<std::string> init;   // after "--": the real init and its arguments
};

// console=ttyS0 panic=-1 quiet ... (the FAST2 set of measured-qemu.md §1).
std::string GuestKernelCmdline(const GuestCmdlineOptions& options);

// The host's TSC frequency in kHz, from /proc/cpuinfo ("cpu MHz"). kNotFound if absent.
Result<uint32_t> HostTscKhz();

}  // namespace kiln::kilnd::vm
