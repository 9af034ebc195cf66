#include "kilnd/orchestrator/api_keys.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace kiln::kilnd {
namespace {

TEST(ApiKeysTest, CreatedKeysVerifyAndOnlyHashesAreStored) {
  auto dir = std::filesystem::temp_directory_path() / ("kiln-keys-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  {
    auto store = Store::Open(dir / "kiln.db");
    ASSERT_TRUE(store);
    ApiKeys keys(**store);
    ASSERT_TRUE(keys.Load());
    EXPECT_TRUE(keys.empty());
    auto key = keys.Create("first");
    ASSERT_TRUE(key);
    EXPECT_EQ(key->rfind("e2b_", 0), 0u);
    EXPECT_EQ(key->size(), 44u);
    EXPECT_TRUE(keys.Verify(*key));
    EXPECT_FALSE(keys.Verify(""));
    EXPECT_FALSE(keys.Verify("e2b_" + std::string(40, '0')));
    auto rows = (*store)->ListApiKeys();
    ASSERT_TRUE(rows);
    ASSERT_EQ(rows->size(), 1u);
    EXPECT_EQ((*rows)[0].name, "first");
    EXPECT_EQ((*rows)[0].hash.find(key->substr(4)), std::string::npos);  // not the key itself

    // A second process (the CLI's `kiln keys create`) adds a key while this one runs.
    auto other_store = Store::Open(dir / "kiln.db");
    ASSERT_TRUE(other_store);
    ApiKeys other(**other_store);
    auto later = other.Create("later");
    ASSERT_TRUE(later);
    EXPECT_TRUE(keys.Verify(*later));
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiln::kilnd
