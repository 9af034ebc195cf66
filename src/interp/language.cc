#include "interp/language.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

namespace kiln::interp {
namespace {

using json = nlohmann::json;

// A JSON string literal, which is also a valid Python and JavaScript string literal.
std::string Quoted(const std::string& s) {
  return json(s).dump(-1, ' ', true, json::error_handler_t::replace);
}

// A single-quoted bash word.
std::string ShellQuoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

}  // namespace

std::optional<Language> ParseLanguage(std::string_view name) {
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.front()))) name.remove_prefix(1);
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.remove_suffix(1);
  std::string lower(name);
  std::ranges::transform(lower, lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower.empty() || lower == "python" || lower == "python3") return Language::kPython;
  if (lower == "javascript" || lower == "js" || lower == "typescript" || lower == "ts" ||
      lower == "node") {
    return Language::kJavaScript;
  }
  if (lower == "bash" || lower == "sh" || lower == "shell") return Language::kBash;
  return std::nullopt;
}

std::string_view LanguageName(Language language) {
  switch (language) {
    case Language::kPython: return "python";
    case Language::kJavaScript: return "javascript";
    case Language::kBash: return "bash";
  }
  return "python";
}

std::vector<std::string> KernelArgv(Language language, const std::filesystem::path& python_dir,
                                    PythonLauncher launcher) {
  switch (language) {
    case Language::kPython:
      if (launcher == PythonLauncher::kStock) {
        return {"/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"};
      }
      return {"/usr/bin/python3", (python_dir / "kiln_ipykernel.py").string(), "-f",
              "{connection_file}"};
    case Language::kJavaScript:
      return {"/usr/bin/python3", (python_dir / "kiln_js_kernel.py").string(), "-f",
              "{connection_file}"};
    case Language::kBash:
      return {"/usr/bin/python3", (python_dir / "kiln_bash_kernel.py").string(), "-f",
              "{connection_file}"};
  }
  return {};
}

std::string KernelSetupCode(Language language) {
  if (language == Language::kPython) return "import kiln_display\nkiln_display.install()\n";
  return "";
}

std::string ChdirCode(Language language, const std::string& dir) {
  switch (language) {
    case Language::kPython: return "import os as __kiln_os\n__kiln_os.chdir(" + Quoted(dir) + ")\ndel __kiln_os\n";
    case Language::kJavaScript: return "process.chdir(" + Quoted(dir) + ");";
    case Language::kBash: return "cd " + ShellQuoted(dir);
  }
  return "";
}

bool IsEnvName(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name.front()))) return false;
  return std::ranges::all_of(name, [](unsigned char c) { return std::isalnum(c) || c == '_'; });
}

std::string EnvCode(Language language,
                    const std::map<std::string, std::optional<std::string>>& changes) {
  std::string code;
  switch (language) {
    case Language::kPython:
      code = "import os as __kiln_os\n";
      for (const auto& [name, value] : changes) {
        if (!IsEnvName(name)) continue;
        if (value) {
          code += "__kiln_os.environ[" + Quoted(name) + "] = " + Quoted(*value) + "\n";
        } else {
          code += "__kiln_os.environ.pop(" + Quoted(name) + ", None)\n";
        }
      }
      code += "del __kiln_os\n";
      return code;
    case Language::kJavaScript:
      for (const auto& [name, value] : changes) {
        if (!IsEnvName(name)) continue;
        if (value) {
          code += "process.env[" + Quoted(name) + "] = " + Quoted(*value) + ";\n";
        } else {
          code += "delete process.env[" + Quoted(name) + "];\n";
        }
      }
      return code + "undefined;\n";
    case Language::kBash:
      for (const auto& [name, value] : changes) {
        if (!IsEnvName(name)) continue;
        if (value) {
          code += "export " + name + "=" + ShellQuoted(*value) + "\n";
        } else {
          code += "unset " + name + "\n";
        }
      }
      return code + "true\n";
  }
  return code;
}

std::string ReseedCode(Language language) {
  switch (language) {
    case Language::kPython:
      return "import random as __kiln_random, sys as __kiln_sys\n"
             "__kiln_random.seed()\n"
             "if 'numpy.random' in __kiln_sys.modules:\n"
             "    __kiln_sys.modules['numpy.random'].seed()\n"
             "del __kiln_random, __kiln_sys\n";
    case Language::kBash:
      return "RANDOM=$(od -An -N4 -tu4 /dev/urandom)\n";
    case Language::kJavaScript:
      return kFreshJsProcess;
  }
  return "";
}

}  // namespace kiln::interp
