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
