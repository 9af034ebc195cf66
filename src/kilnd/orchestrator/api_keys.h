#pragma once

// API keys for the control API. Keys are shown once when created; the store keeps only
// their SHA-256. Verification compares hashes in constant time.

#include <string>
#include <vector>

#include "base/error.h"
#include "kilnd/orchestrator/store.h"

namespace kiln::kilnd {

class ApiKeys {
 public:
  explicit ApiKeys(Store& store) : store_(store) {}

  Status Load();
  bool empty() const { return hashes_.empty(); }
  // Creates, stores and returns a new key ("e2b_" + 40 hex).
  Result<std::string> Create(const std::string& name);
  // Keys created since Load() (`kiln keys create` while kilnd runs) are found in the store.
  bool Verify(std::string_view key);

 private:
  Store& store_;
  std::vector<std::string> hashes_;
};

}  // namespace kiln::kilnd
