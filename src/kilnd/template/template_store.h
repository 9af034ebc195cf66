#pragma once

// The template store (DESIGN.md §5): built templates under one directory, each a read-only
// rootfs (the overlay lower layer of every sandbox made from it) plus metadata:
//
//   <store>/.lock                  flock(2): one build at a time, across processes
//   <store>/<name>/rootfs/         the tree
//   <store>/<name>/template.json   TemplateInfo, including the recipe stamp it was built from
//   <store>/.build-<name>-XXXXXX/  a build in progress (or the remains of a killed one)

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "kilnd/template/build_progress.h"
#include "kilnd/template/recipe.h"
#include "kilnd/template/rootfs_builder.h"

namespace kiln::kilnd::tmpl {

struct TemplateInfo {
  std::string name;              // "base"
  std::filesystem::path rootfs;  // <store>/<name>/rootfs
  std::string default_user = "user";
  std::string workdir = "/home/user";
  std::map<std::string, std::string> env;
  std::string created_at;  // RFC 3339, UTC
  std::string recipe;      // Recipe::Stamp() of the recipe it was built from (and its parents)
  // The template's service (Recipe::start_cmd); empty: none.
  std::vector<std::string> start_cmd;
  uint16_t ready_port = 0;
  std::string ready_path;
};

// template.json: the fields of TemplateInfo except rootfs, plus "format": 1.
std::string TemplateInfoToJson(const TemplateInfo& info);
// kInvalidArgument for malformed JSON or fields of the wrong type; `rootfs` is filled in from
// the argument.
Result<TemplateInfo> ParseTemplateInfo(std::string_view json, const std::filesystem::path& rootfs);

struct StoreOptions {
  // Debian mirror for builds; empty: HostDebianMirror() at build time.
  std::string mirror;
  // The templates EnsureBuilt can build.
  std::vector<Recipe> recipes = BuiltinRecipes();
  // Makes a rootfs from a recipe. Tests substitute a fake.
  RootfsBuilder builder = BuildDebianRootfs;
};

// Finds and builds templates in one store directory (e.g. /var/cache/kiln/templates).
// Holds no mutable state: every method is thread-safe, and processes sharing the directory
// coordinate through its lock file. Building needs root.
class TemplateStore {
 public:
  explicit TemplateStore(std::filesystem::path dir, StoreOptions options = {});

  const std::filesystem::path& dir() const { return dir_; }

  // The built template `name` (or one of its recipe's aliases). kNotFound if it is not built,
  // its metadata is unreadable, or it was built from another version of its recipe (or of a
  // parent's; EnsureBuilt rebuilds it then).
  // kInvalidArgument for a name that cannot be a template (IsValidTemplateName).
  Result<TemplateInfo> Get(std::string_view name) const;

  // Every current template, sorted by name.
  std::vector<TemplateInfo> List() const;

  // Returns Get(name) if it succeeds; otherwise builds the template from its recipe (minutes;
  // blocking). Builds run one at a time per store, across processes; a caller that waited for
  // another's build of the same template gets that result. The build happens in a temporary
  // directory that is renamed into place at the end, so a failed or killed build leaves no
  // partial template (the next build removes its remains). A template of an older recipe is
  // replaced atomically. `progress` (may be empty) is called on this thread.
  // A recipe with a parent builds the parent first. kNotFound: no recipe named `name`, or
  // `envd_binary` is missing. Build failures carry the builder's error (e.g. debootstrap's
  // last lines).
  Result<TemplateInfo> EnsureBuilt(std::string_view name, const std::filesystem::path& envd_binary,
                                   const ProgressFn& progress) const;

 private:
  // By name or alias.
  const Recipe* FindRecipe(std::string_view name) const;
  // The recipe's Stamp() followed by its parents' (so a parent's change rebuilds children).
  std::string FullStamp(const Recipe& recipe) const;
  Result<TemplateInfo> Build(const Recipe& recipe, const std::filesystem::path& envd_binary,
                             const std::filesystem::path& parent_rootfs,
                             const ProgressFn& progress) const;

  std::filesystem::path dir_;
  StoreOptions options_;
};

}  // namespace kiln::kilnd::tmpl
