#pragma once

// The isolation runtime interface (DESIGN.md §4): the orchestrator creates, pauses and kills
// sandboxes through it and never sees namespaces, cgroups or QEMU. Implementations:
// kilnd/runtime/ns (namespaces + seccomp + cgroups); later kilnd/runtime/vm.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::kilnd {

struct SandboxLimits {
  uint64_t memory_bytes = 512ull << 20;  // cgroup memory limit (OOM inside the sandbox)
  uint32_t pids = 512;                    // cgroup pids.max
  uint32_t cpu_millis = 1000;             // CPU quota, 1000 = one core
  uint64_t disk_bytes = 1ull << 30;       // size of the writable layer (tmpfs upper)
};

// Outbound network policy of a sandbox. The host, link-local/metadata and private ranges
// are always blocked; `internet` false blocks all egress.
struct EgressPolicy {
  bool internet = true;
};

struct InstanceSpec {
  std::string id;                       // sandbox id, [a-z0-9]+
  std::filesystem::path rootfs;         // template rootfs: the read-only lower layer
  std::filesystem::path envd_binary;    // host path of kiln-envd; the sandbox's init
  // Host path of kiln-interp, mounted read-only at /.kiln/interp like the agent (templates
  // whose service is the code interpreter start it from there); empty: not mounted.
  std::filesystem::path interp_binary;
  // Resume from a filesystem snapshot: the writable layer starts as a copy of this
  // directory (made by Instance::SnapshotFiles).
  std::optional<std::filesystem::path> files_from;
  SandboxLimits limits;
  EgressPolicy egress;
  std::string hostname = "sandbox";
  // Content for /etc/resolv.conf in the sandbox's writable layer; empty leaves the
  // template's file alone.
  std::string resolv_conf;
  // The template's service (e.g. kiln-interp), started as root through the agent and ready
  // once GET http://address():<port><path> answers 2xx. Only a runtime whose
  // starts_services() is true starts it itself; otherwise the orchestrator does.
  struct Service {
    std::vector<std::string> cmd;
    uint16_t port = 0;
    std::string path = "/";
  };
  std::optional<Service> service;
};

struct InstanceStats {
  uint64_t cpu_usage_ns = 0;  // cumulative CPU time of the sandbox
  uint32_t cpu_count = 1;
  uint64_t mem_used = 0;      // bytes
  uint64_t mem_total = 0;     // the memory limit
  uint64_t mem_cache = 0;
  uint64_t disk_used = 0;     // bytes used in the writable layer
  uint64_t disk_total = 0;
};

// One running (or frozen) sandbox. Destroying it kills every process in it and releases
// everything it holds (cgroups, network, mounts); nothing is left on the host.
class Instance {
 public:
  virtual ~Instance() = default;

  virtual const std::string& id() const = 0;
  // PID (in kilnd's pid namespace) of the sandbox's init, kiln-envd.
  virtual pid_t init_pid() const = 0;

  // A new, non-blocking, close-on-exec TCP socket that lives in the sandbox's network
  // namespace; connect it to address():<port> to reach a port inside the sandbox. The
  // sandbox needs no address routable from the host for this.
  virtual Result<UniqueFd> OpenSocket() = 0;
  // Where OpenSocket()'s sockets reach the sandbox: its own loopback for the ns runtime
  // (the socket is in the sandbox's network namespace), the guest's address for vm.
  virtual std::string_view address() const { return "127.0.0.1"; }
  // The same for a UDP socket (kilnd serves the sandbox's DNS with one, bound to
  // dns_address():53, the nameserver in the sandbox's resolv.conf).
  virtual Result<UniqueFd> OpenUdpSocket() {
    return Fail(Errc::kUnimplemented, "no UDP sockets in this runtime");
  }
  virtual std::string_view dns_address() const { return "127.0.0.53"; }

  // Stops / restarts every process in the sandbox (cgroup freezer). Memory stays resident.
  virtual Status Freeze() = 0;
  virtual Status Thaw() = 0;

  virtual Status SetEgress(const EgressPolicy& policy) = 0;

  // Copies the writable layer (files the sandbox created, changed or deleted) to `dest`,
  // a new directory on persistent storage. Best done while frozen.
  virtual Status SnapshotFiles(const std::filesystem::path& dest) = 0;

  virtual Result<InstanceStats> Stats() = 0;

  // A new descriptor that becomes readable when the sandbox's init exits on its own (crash,
  // OOM kill), so the orchestrator notices a dead sandbox. kUnimplemented if the runtime
  // cannot tell; kFailedPrecondition once the instance was killed (the proxy tells the two
  // apart from other failures).
  virtual Result<UniqueFd> ExitFd() { return Fail(Errc::kUnimplemented, "no exit notification"); }

  // Kills every process and releases the resources now (idempotent). The destructor does
  // the same.
  virtual Status Kill() = 0;
};

class Runtime {
 public:
  virtual ~Runtime() = default;
  virtual std::string_view name() const = 0;

  // Starts a sandbox whose init is kiln-envd listening on 0.0.0.0:49983. Returns once the
  // process exists (not when the agent answers). Blocking: call it off the I/O thread.
  virtual Result<std::unique_ptr<Instance>> Create(const InstanceSpec& spec) = 0;

  // Removes what a previous kilnd left behind when it died (processes, cgroups, firewall
  // state). Called once at start-up, before any Create.
  virtual Status CleanupStale() = 0;

  // Whether Instance::SnapshotFiles saves the whole sandbox (memory and processes, not only
  // its files) and Create with `files_from` brings it back running as it was: the
  // orchestrator then stops a paused instance at once (its memory is on disk) and does not
  // start the template's service again on resume.
  virtual bool snapshots_keep_processes() const { return false; }

  // Whether Create starts InstanceSpec::service itself (the vm runtime has it running in the
  // template's memory snapshot), so a new sandbox is returned with it ready.
  virtual bool starts_services() const { return false; }
};

}  // namespace kiln::kilnd
