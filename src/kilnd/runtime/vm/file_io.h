#pragma once

// Whole-file reads and writes for the images the vm runtime makes (kernels, initramfs).

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln::kilnd::vm {

// kNotFound if missing; kResourceExhausted if larger than `max_size`.
Result<std::string> ReadWholeFile(const std::filesystem::path& path, size_t max_size);

// Creates (or truncates) `path` with `mode` and writes `data`, then fsyncs it.
Status WriteWholeFile(const std::filesystem::path& path, std::string_view data, mode_t mode);

// Writes `data` to a temporary file beside `path` and renames it over `path`.
Status ReplaceFile(const std::filesystem::path& path, std::string_view data, mode_t mode);

}  // namespace kiln::kilnd::vm
