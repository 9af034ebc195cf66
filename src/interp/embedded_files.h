#pragma once

// The Python (and JavaScript) files kiln-interp puts on its kernels' PYTHONPATH: kiln_display
// and the wrapper kernels of src/interp/python, compiled into the binary so that one file
// (mounted into every sandbox) carries everything.

#include <filesystem>
#include <span>
#include <string_view>

#include "base/error.h"

namespace kiln::interp {

struct EmbeddedFile {
  std::string_view name;     // "kiln_display.py"
  std::string_view content;
};

std::span<const EmbeddedFile> PythonFiles();

// Writes every file into `dir` (created 0755 if missing; files 0644, replaced atomically).
Status WritePythonFiles(const std::filesystem::path& dir);

}  // namespace kiln::interp
