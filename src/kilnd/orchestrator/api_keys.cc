#include "kilnd/orchestrator/api_keys.h"

#include <chrono>

#include "base/encoding.h"
#include "kilnd/orchestrator/ids.h"

namespace kiln::kilnd {

Status ApiKeys::Load() {
  KILN_ASSIGN_OR_RETURN(std::vector<ApiKeyRow> rows, store_.ListApiKeys());
  hashes_.clear();
  for (auto& r : rows) hashes_.push_back(std::move(r.hash));
  return {};
}

Result<std::string> ApiKeys::Create(const std::string& name) {
  std::string key = NewApiKey();
  ApiKeyRow row;
  row.id = key.substr(4, 8);
  row.name = name;
  row.hash = Sha256Hex(key);
  row.created_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  KILN_TRY(store_.PutApiKey(row));
  hashes_.push_back(row.hash);
  return key;
}

bool ApiKeys::Verify(std::string_view key) {
  if (key.empty()) return false;
  std::string hash = Sha256Hex(key);
  bool found = false;
  // Every known hash is compared, so the time taken does not depend on which one matches.
  for (const auto& h : hashes_) found |= ConstantTimeEquals(hash, h);
  if (found) return true;
  // A key made by another process (the CLI) since: one indexed lookup of the hash.
  auto stored = store_.HasApiKeyHash(hash);
  if (!stored || !*stored) return false;
  hashes_.push_back(std::move(hash));
  return true;
}

}  // namespace kiln::kilnd
