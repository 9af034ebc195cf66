#pragma once

// Recipes of the built-in templates: what goes into each rootfs. A template in the store is
// current when the recipe stamp recorded at build time equals the recipe's Stamp() now.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::kilnd::tmpl {

struct Recipe {
  std::string name;  // template name, [a-z0-9][a-z0-9.-]*
  // Bump when the build changes in a way the fields below do not show (a new customisation
  // step, other file contents): every store rebuilds the template on its next EnsureBuilt.
  int version = 1;
  std::string suite = "bookworm";
  std::string variant = "minbase";
  // debootstrap --include (dependencies are resolved; Recommends are not installed).
  std::vector<std::string> packages;
  // Metadata given to every sandbox of the template.
  std::string default_user = "user";
  std::string workdir = "/home/user";
  std::map<std::string, std::string> env;
  // Roughly how many .debs debootstrap fetches; only scales the progress percentage.
  int expected_debs = 150;
  // Built on another template instead of from scratch: the parent's rootfs is copied, then
  // `apt_packages` are installed into the copy with its own apt-get (--no-install-recommends).
  std::string parent;
  std::vector<std::string> apt_packages;
  // Other names the template answers to (e.g. "code-interpreter").
  std::vector<std::string> aliases;
  // A service kilnd starts (as root, after the agent answers) in every sandbox of the template
  // and waits for before the sandbox is handed out: ready once
  // GET http://127.0.0.1:<ready_port><ready_path> inside the sandbox answers 2xx.
  std::vector<std::string> start_cmd;
  uint16_t ready_port = 0;
  std::string ready_path = "/";

  // Identifies everything that decides the tree's contents (not the mirror: the same recipe
  // from another mirror gives the same tree), e.g.
  // "base v1 bookworm/minbase +bash,coreutils,... user=user workdir=/home/user".
  std::string Stamp() const;
};

// The built-in recipes ("base", "code-interpreter-v1"); a fresh copy per call (no global state).
std::vector<Recipe> BuiltinRecipes();

// True for names the store accepts: 1..64 of [a-z0-9._-], starting with a letter or digit
// (so that no name is "." or "..", hidden, or contains a '/').
bool IsValidTemplateName(std::string_view name);

}  // namespace kiln::kilnd::tmpl
