#pragma once

// Helpers for the vm runtime's tests (header-only, included by *_test.cc only).

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace kiln::kilnd::vm::testing {

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string templ = "/tmp/kiln-vm-test-XXXXXX";
    if (mkdtemp(templ.data()) != nullptr) path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// kiln-vminit: $KILN_TEST_VMINIT, else cmd/kiln-vminit beside the test binary's directory.
inline std::filesystem::path VmInitBinary() {
  if (const char* env = getenv("KILN_TEST_VMINIT"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return self.parent_path() / "cmd" / "kiln-vminit";
}

// kiln-envd: $KILN_TEST_ENVD, else cmd/kiln-envd beside the test binary's directory.
inline std::filesystem::path EnvdBinary() {
  if (const char* env = getenv("KILN_TEST_ENVD"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return self.parent_path() / "cmd" / "kiln-envd";
}

// The kernel cache: $KILN_VM_CACHE, else the default one (shared with kilnd).
inline std::filesystem::path VmCacheDir() {
  if (const char* env = getenv("KILN_VM_CACHE"); env != nullptr && *env != '\0') return env;
  return "/var/cache/kiln/vm";
}

}  // namespace kiln::kilnd::vm::testing
