#pragma once

// kilnd's persistent state in SQLite (one file in the data directory): sandboxes, API keys.
// Only the orchestrator's I/O thread uses a Store; writes are small and synchronous (WAL).

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace kiln::kilnd {

// What the store keeps about a sandbox: enough to list it, to resume it after a restart
// and to say what happened to it.
struct SandboxRow {
  std::string id;
  std::string template_id;
  std::string alias;
  std::string state;  // creating | running | paused | killed
  std::map<std::string, std::string> metadata;
  std::map<std::string, std::string> env_vars;
  std::string envd_token;
  bool allow_internet = true;
  bool auto_pause = false;
  bool auto_resume = false;  // a paused sandbox resumes when traffic arrives for it
  int64_t started_at_ms = 0;
  int64_t end_at_ms = 0;
  uint32_t cpu_count = 1;
  uint32_t memory_mb = 512;
  uint32_t disk_mb = 1024;
  std::string snapshot_dir;  // set while paused: the saved writable layer
  std::string end_reason;    // why it was killed: "killed by API", "timeout", "kilnd restarted", ...
  int64_t ended_at_ms = 0;
};

struct ApiKeyRow {
  std::string id;      // short public id, e.g. the key's first characters
  std::string name;
  std::string hash;    // hex SHA-256 of the key; the key itself is never stored
  int64_t created_at_ms = 0;
};

// A template kilnd has seen in its template store (the store directory holds the files).
struct TemplateRow {
  std::string name;
  std::string rootfs;
  std::string recipe;
  std::string created_at;  // RFC 3339, when it was built
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const std::filesystem::path& file);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  Status PutSandbox(const SandboxRow& row);  // insert or replace
  Result<std::optional<SandboxRow>> GetSandbox(const std::string& id);
  // Every sandbox whose state is one of `states` (all when empty).
  Result<std::vector<SandboxRow>> ListSandboxes(const std::vector<std::string>& states);
  Status DeleteSandbox(const std::string& id);

  Status PutApiKey(const ApiKeyRow& row);
  Result<std::vector<ApiKeyRow>> ListApiKeys();
  Result<bool> HasApiKeyHash(const std::string& hash);
  Status DeleteApiKey(const std::string& id);

  // Replaces the template records with `rows` (what the template store holds now).
  Status SyncTemplates(const std::vector<TemplateRow>& rows);
  Result<std::vector<TemplateRow>> ListTemplates();

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);

  sqlite3* db_;
};

}  // namespace kiln::kilnd
