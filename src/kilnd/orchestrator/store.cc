#include "kilnd/orchestrator/store.h"

#include <nlohmann/json.hpp>

namespace kiln::kilnd {
namespace {

using json = nlohmann::json;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS sandboxes (
  id TEXT PRIMARY KEY,
  template_id TEXT NOT NULL,
  alias TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  metadata TEXT NOT NULL DEFAULT '{}',
  env_vars TEXT NOT NULL DEFAULT '{}',
  envd_token TEXT NOT NULL DEFAULT '',
  allow_internet INTEGER NOT NULL DEFAULT 1,
  auto_pause INTEGER NOT NULL DEFAULT 0,
  auto_resume INTEGER NOT NULL DEFAULT 0,
  started_at_ms INTEGER NOT NULL,
  end_at_ms INTEGER NOT NULL,
  cpu_count INTEGER NOT NULL,
  memory_mb INTEGER NOT NULL,
  disk_mb INTEGER NOT NULL,
  snapshot_dir TEXT NOT NULL DEFAULT '',
  end_reason TEXT NOT NULL DEFAULT '',
  ended_at_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sandboxes_state ON sandboxes(state);
CREATE TABLE IF NOT EXISTS templates (
  name TEXT PRIMARY KEY,
  rootfs TEXT NOT NULL,
  recipe TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL DEFAULT '',
  hash TEXT NOT NULL UNIQUE,
  created_at_ms INTEGER NOT NULL
);
)sql";

// One prepared statement; finalized on destruction.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Status ok() const {
    if (rc_ != SQLITE_OK) return Fail(Errc::kInternal, std::string("sqlite prepare: ") + sqlite3_errmsg(db_));
    return {};
  }
  void Bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  // SQLITE_ROW -> true, SQLITE_DONE -> false.
  Result<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return Fail(Errc::kInternal, std::string("sqlite step: ") + sqlite3_errmsg(db_));
  }
  std::string Text(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

std::string MapToJson(const std::map<std::string, std::string>& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::map<std::string, std::string> JsonToMap(const std::string& s) {
  std::map<std::string, std::string> out;
  json j = json::parse(s, nullptr, false);
  if (!j.is_object()) return out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.value().is_string()) out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

constexpr const char* kSandboxColumns =
    "id, template_id, alias, state, metadata, env_vars, envd_token, allow_internet, auto_pause,"
    " started_at_ms, end_at_ms, cpu_count, memory_mb, disk_mb, snapshot_dir, end_reason,"
    " ended_at_ms, auto_resume";

SandboxRow ReadSandbox(const Statement& st) {
  SandboxRow r;
  r.id = st.Text(0);
  r.template_id = st.Text(1);
  r.alias = st.Text(2);
  r.state = st.Text(3);
  r.metadata = JsonToMap(st.Text(4));
  r.env_vars = JsonToMap(st.Text(5));
  r.envd_token = st.Text(6);
  r.allow_internet = st.Int(7) != 0;
  r.auto_pause = st.Int(8) != 0;
  r.started_at_ms = st.Int(9);
  r.end_at_ms = st.Int(10);
  r.cpu_count = static_cast<uint32_t>(st.Int(11));
  r.memory_mb = static_cast<uint32_t>(st.Int(12));
  r.disk_mb = static_cast<uint32_t>(st.Int(13));
  r.snapshot_dir = st.Text(14);
  r.end_reason = st.Text(15);
  r.ended_at_ms = st.Int(16);
  r.auto_resume = st.Int(17) != 0;
  return r;
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::filesystem::path& file) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(file.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = "open " + file.string() + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return Fail(Errc::kUnavailable, msg);
  }
  std::unique_ptr<Store> store(new Store(db));
  sqlite3_busy_timeout(db, 5000);
  KILN_TRY(store->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"));
  KILN_TRY(store->Exec(kSchema));
  return store;
}

Store::~Store() { sqlite3_close(db_); }

Status Store::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = std::string("sqlite: ") + (err ? err : "error");
    sqlite3_free(err);
    return Fail(Errc::kInternal, msg);
  }
  return {};
}

Status Store::PutSandbox(const SandboxRow& r) {
  Statement st(db_,
               "INSERT OR REPLACE INTO sandboxes (id, template_id, alias, state, metadata, env_vars,"
               " envd_token, allow_internet, auto_pause, started_at_ms, end_at_ms, cpu_count,"
               " memory_mb, disk_mb, snapshot_dir, end_reason, ended_at_ms, auto_resume)"
               " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  KILN_TRY(st.ok());
  st.Bind(1, r.id);
  st.Bind(2, r.template_id);
  st.Bind(3, r.alias);
  st.Bind(4, r.state);
  st.Bind(5, MapToJson(r.metadata));
  st.Bind(6, MapToJson(r.env_vars));
  st.Bind(7, r.envd_token);
  st.Bind(8, int64_t{r.allow_internet});
  st.Bind(9, int64_t{r.auto_pause});
  st.Bind(10, r.started_at_ms);
  st.Bind(11, r.end_at_ms);
  st.Bind(12, int64_t{r.cpu_count});
  st.Bind(13, int64_t{r.memory_mb});
  st.Bind(14, int64_t{r.disk_mb});
  st.Bind(15, r.snapshot_dir);
  st.Bind(16, r.end_reason);
  st.Bind(17, r.ended_at_ms);
  st.Bind(18, int64_t{r.auto_resume});
  KILN_TRY(st.Step());
  return {};
}

Result<std::optional<SandboxRow>> Store::GetSandbox(const std::string& id) {
  std::string sql = std::string("SELECT ") + kSandboxColumns + " FROM sandboxes WHERE id = ?";
  Statement st(db_, sql.c_str());
  KILN_TRY(st.ok());
  st.Bind(1, id);
  KILN_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<SandboxRow>();
  return std::optional<SandboxRow>(ReadSandbox(st));
}

Result<std::vector<SandboxRow>> Store::ListSandboxes(const std::vector<std::string>& states) {
  std::string sql = std::string("SELECT ") + kSandboxColumns + " FROM sandboxes";
  if (!states.empty()) {
    sql += " WHERE state IN (";
    for (size_t i = 0; i < states.size(); ++i) sql += i ? ",?" : "?";
    sql += ")";
  }
  sql += " ORDER BY started_at_ms, id";
  Statement st(db_, sql.c_str());
  KILN_TRY(st.ok());
  for (size_t i = 0; i < states.size(); ++i) st.Bind(static_cast<int>(i + 1), states[i]);
  std::vector<SandboxRow> out;
  for (;;) {
    KILN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadSandbox(st));
  }
  return out;
}

Status Store::DeleteSandbox(const std::string& id) {
  Statement st(db_, "DELETE FROM sandboxes WHERE id = ?");
  KILN_TRY(st.ok());
  st.Bind(1, id);
  KILN_TRY(st.Step());
  return {};
}

Status Store::PutApiKey(const ApiKeyRow& r) {
  Statement st(db_,
               "INSERT OR REPLACE INTO api_keys (id, name, hash, created_at_ms) VALUES (?,?,?,?)");
  KILN_TRY(st.ok());
  st.Bind(1, r.id);
  st.Bind(2, r.name);
  st.Bind(3, r.hash);
  st.Bind(4, r.created_at_ms);
  KILN_TRY(st.Step());
  return {};
}

Result<std::vector<ApiKeyRow>> Store::ListApiKeys() {
  Statement st(db_, "SELECT id, name, hash, created_at_ms FROM api_keys ORDER BY created_at_ms");
  KILN_TRY(st.ok());
  std::vector<ApiKeyRow> out;
  for (;;) {
    KILN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ApiKeyRow{st.Text(0), st.Text(1), st.Text(2), st.Int(3)});
  }
  return out;
}

Result<bool> Store::HasApiKeyHash(const std::string& hash) {
  Statement st(db_, "SELECT 1 FROM api_keys WHERE hash = ?");
  KILN_TRY(st.ok());
  st.Bind(1, hash);
  return st.Step();
}

Status Store::DeleteApiKey(const std::string& id) {
  Statement st(db_, "DELETE FROM api_keys WHERE id = ?");
  KILN_TRY(st.ok());
  st.Bind(1, id);
  KILN_TRY(st.Step());
  return {};
}

Status Store::SyncTemplates(const std::vector<TemplateRow>& rows) {
  KILN_TRY(Exec("BEGIN"));
  auto body = [&]() -> Status {
    KILN_TRY(Exec("DELETE FROM templates"));
    for (const auto& r : rows) {
      Statement st(db_, "INSERT INTO templates (name, rootfs, recipe, created_at) VALUES (?,?,?,?)");
      KILN_TRY(st.ok());
      st.Bind(1, r.name);
      st.Bind(2, r.rootfs);
      st.Bind(3, r.recipe);
      st.Bind(4, r.created_at);
      KILN_TRY(st.Step());
    }
    return {};
  }();
  if (!body) {
    (void)Exec("ROLLBACK");
    return body;
  }
  return Exec("COMMIT");
}

Result<std::vector<TemplateRow>> Store::ListTemplates() {
  Statement st(db_, "SELECT name, rootfs, recipe, created_at FROM templates ORDER BY name");
  KILN_TRY(st.ok());
  std::vector<TemplateRow> out;
  for (;;) {
    KILN_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(TemplateRow{st.Text(0), st.Text(1), st.Text(2), st.Text(3)});
  }
  return out;
}

}  // namespace kiln::kilnd
