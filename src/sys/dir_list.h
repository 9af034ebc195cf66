#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln::sys {

// The names in the directory open as `dirfd` (without "." and ".."), read through a
// duplicate so `dirfd` stays usable for *at() calls. `what` names the directory in errors
// ("readdir <what>: ...").
Result<std::vector<std::string>> ListDirNames(int dirfd, std::string_view what);

}  // namespace kiln::sys
