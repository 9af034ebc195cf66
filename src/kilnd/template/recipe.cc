#include "kilnd/template/recipe.h"

namespace kiln::kilnd::tmpl {

std::string Recipe::Stamp() const {
  std::string s = name;
  s.append(" v").append(std::to_string(version));
  s.append(" ").append(suite).append("/").append(variant).append(" +");
  for (size_t i = 0; i < packages.size(); ++i) {
    if (i > 0) s += ',';
    s += packages[i];
  }
  s.append(" user=").append(default_user).append(" workdir=").append(workdir);
  for (const auto& [key, value] : env) s.append(" env:").append(key).append("=").append(value);
  if (!parent.empty()) {
    s.append(" parent=").append(parent).append(" +apt:");
    for (size_t i = 0; i < apt_packages.size(); ++i) {
      if (i > 0) s += ',';
      s += apt_packages[i];
    }
  }
  if (!start_cmd.empty()) {
    s.append(" start:");
    for (const std::string& arg : start_cmd) s.append(" ").append(arg);
    s.append(" ready:").append(std::to_string(ready_port)).append(ready_path);
  }
  return s;
}

std::vector<Recipe> BuiltinRecipes() {
  std::vector<Recipe> recipes;
  Recipe base;
  base.name = "base";
  base.version = 3;  // v2: apt package lists removed; v3: /usr/local/bin/sudo -> /.kiln/envd
  base.packages = {"bash", "coreutils", "python3", "git",
                   "curl", "sudo",      "procps",  "ca-certificates"};
  base.env = {{"LANG", "C.UTF-8"}};
  base.expected_debs = 135;  // 134 when measured
  recipes.push_back(std::move(base));

  // E2B's code interpreter: Jupyter kernels behind kiln-interp (mounted by the runtime at
  // /.kiln/interp, like the agent), started in every sandbox with the common imports paid for.
  Recipe interp;
  interp.name = "code-interpreter-v1";
  interp.version = 1;
  interp.parent = "base";
  interp.apt_packages = {"python3-ipykernel", "python3-numpy",      "python3-pandas",
                         "python3-matplotlib", "python3-seaborn",   "python3-sklearn",
                         "python3-pip",        "python3-setuptools", "python3-wheel",
                         "nodejs"};
  interp.aliases = {"code-interpreter"};
  // Debian marks its Python as externally managed; in a throwaway sandbox `pip install` should
  // just work, as it does in E2B's image.
  interp.env = {{"LANG", "C.UTF-8"}, {"PIP_BREAK_SYSTEM_PACKAGES", "1"}};
  interp.start_cmd = {"/.kiln/interp", "--port", "49999"};
  interp.ready_port = 49999;
  interp.ready_path = "/ready";
  interp.expected_debs = 200;  // 200 set up when measured
  recipes.push_back(std::move(interp));
  return recipes;
}

bool IsValidTemplateName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name.front())) return false;
  for (char c : name) {
    if (!alnum(c) && c != '.' && c != '-' && c != '_') return false;
  }
  return true;
}

}  // namespace kiln::kilnd::tmpl
