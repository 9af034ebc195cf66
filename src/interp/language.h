#pragma once

// The languages kiln-interp runs and what differs between them: the kernel command and the
// little pieces of code that set a context's working directory and environment variables.
//
//   python      Debian's ipykernel started by kiln_ipykernel.py (the stock kernel without its
//               per-cell waits; `python3 -m ipykernel_launcher` with --stock-kernel), with
//               kiln_display loaded
//   javascript  kiln_js_kernel.py: a Jupyter wrapper kernel driving one node process
//               ("js", "ts" and "typescript" run here too)
//   bash        kiln_bash_kernel.py: a Jupyter wrapper kernel driving one bash process

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::interp {

enum class Language { kPython, kJavaScript, kBash };

// Lower-cased and trimmed; "" -> python, "js"/"ts"/"typescript" -> javascript, "sh" -> bash.
// nullopt for languages without a kernel here (r, java, ...).
std::optional<Language> ParseLanguage(std::string_view name);
std::string_view LanguageName(Language language);

// How python kernels are started.
enum class PythonLauncher {
  kFast,   // python_dir/kiln_ipykernel.py: the same ipykernel without its per-cell waits
  kStock,  // python3 -m ipykernel_launcher, what Jupyter runs (for A/B comparisons)
};

// The kernel command; "{connection_file}" is replaced by the kernel's connection file.
// `python_dir` holds our Python files (kiln_display.py, kiln_ipykernel.py and the wrapper kernels).
std::vector<std::string> KernelArgv(Language language, const std::filesystem::path& python_dir,
                                    PythonLauncher launcher = PythonLauncher::kFast);

// Setup code run silently once a kernel is up (python: loads kiln_display); may be empty.
std::string KernelSetupCode(Language language);

// Code that changes the kernel's working directory.
std::string ChdirCode(Language language, const std::string& dir);

// Code that sets (value) or removes (nullopt) environment variables in the kernel process.
// Names that are not [A-Za-z_][A-Za-z0-9_]* are skipped (bash could not export them).
std::string EnvCode(Language language,
                    const std::map<std::string, std::optional<std::string>>& changes);

bool IsEnvName(std::string_view name);

// The JavaScript kernel's directive to replace its node process with a new one (in the same
// working directory): V8's Math.random and OpenSSL's generators cannot be reseeded in place.
inline constexpr char kFreshJsProcess[] = "%kiln_fresh_process";

// Code that reseeds a kernel's in-process random generators from the OS (python: `random` and
// numpy's global generator if loaded; bash: $RANDOM; javascript: a new node process). Run in
// kernels that ran none of the user's code when the sandbox was restored from a memory
// snapshot (a template's, of which every sandbox is a copy that would otherwise go on with the
// same sequences). A kernel that ran the user's code comes back from its own sandbox's pause,
// of which there is no other copy, and keeps its state (a seed the user set, say).
std::string ReseedCode(Language language);

}  // namespace kiln::interp
