#pragma once

// File-level helpers shared by the cgroup backends: control files are read and written
// relative to an open directory, and cgroup.events is waited on with poll(2).

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::kilnd::cgroup::internal {

using Clock = std::chrono::steady_clock;

// Opens a cgroup directory (O_DIRECTORY | O_CLOEXEC, usable for CLONE_INTO_CGROUP).
Result<UniqueFd> OpenDir(const std::filesystem::path& path);

// Writes `value` to the control file `file` in `dir`; errors name dir/file.
Status WriteAt(int dirfd, const std::filesystem::path& dir, const char* file,
               std::string_view value);
Result<std::string> ReadAt(int dirfd, const std::filesystem::path& dir, const char* file);

// The number after "key " in a "key value" per-line file (cgroup.events, memory.stat, ...).
std::optional<uint64_t> KeyedValue(std::string_view text, std::string_view key);
// A whole file holding one number ("max" and "-1" read as nullopt).
std::optional<uint64_t> ParseNumber(std::string_view text);

// Waits until cgroup.events of `dir` shows "<key> <want>". kTimeout at `deadline`.
Status WaitEvent(int dirfd, const std::filesystem::path& dir, std::string_view key, uint64_t want,
                 Clock::time_point deadline);

// Removes the directory of an empty group; retries briefly on EBUSY (v1 may report the group
// busy for a moment after its last task exited). ENOENT is success.
Status RemoveDir(const std::filesystem::path& path, Clock::time_point deadline);

// SIGKILLs the tasks listed in `dir`/cgroup.procs and waits (pidfd poll) until they exit. For
// groups without cgroup.kill (v1).
Status KillListedTasks(const std::filesystem::path& dir, Clock::time_point deadline);

}  // namespace kiln::kilnd::cgroup::internal
