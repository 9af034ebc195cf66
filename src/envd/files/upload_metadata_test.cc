#include "envd/files/upload_metadata.h"

#include <gtest/gtest.h>

namespace kiln::envd {
namespace {

TEST(MetadataFromHeadersTest, CollectsAndLowerCasesKeys) {
  http::Fields f;
  f.set("X-Metadata-Owner", "Team A");
  f.set("x-metadata-build_id", "42");
  f.set("Content-Type", "application/octet-stream");
  f.set("X-Metadata", "not metadata");
  auto md = MetadataFromHeaders(f);
  ASSERT_TRUE(md) << md.error().message();
  EXPECT_EQ(md->size(), 2u);
  EXPECT_EQ(md->at("owner"), "Team A");
  EXPECT_EQ(md->at("build_id"), "42");
}

TEST(MetadataFromHeadersTest, NoHeadersIsEmpty) {
  auto md = MetadataFromHeaders(http::Fields());
  ASSERT_TRUE(md);
  EXPECT_TRUE(md->empty());
}

TEST(MetadataFromHeadersTest, EmptyValueIsAllowed) {
  http::Fields f;
  f.set("X-Metadata-k", "");
  auto md = MetadataFromHeaders(f);
  ASSERT_TRUE(md);
  EXPECT_EQ(md->at("k"), "");
}

TEST(MetadataFromHeadersTest, FirstValueWins) {
  http::Fields f;
  f.insert("X-Metadata-k", "one");
  f.insert("x-metadata-K", "two");
  auto md = MetadataFromHeaders(f);
  ASSERT_TRUE(md);
  EXPECT_EQ(md->at("k"), "one");
}

TEST(MetadataFromHeadersTest, RejectsNonPrintableValue) {
  http::Fields f;
  f.set("X-Metadata-k", "caf\xc3\xa9");
  auto md = MetadataFromHeaders(f);
  ASSERT_FALSE(md);
  EXPECT_EQ(md.error().code(), Errc::kInvalidArgument);
  f.set("X-Metadata-k", "tab\there");
  EXPECT_FALSE(MetadataFromHeaders(f));
}

TEST(MetadataFromHeadersTest, RejectsEmptyKey) {
  http::Fields f;
  f.set("X-Metadata-", "v");
  EXPECT_FALSE(MetadataFromHeaders(f));
}

TEST(MetadataFromHeadersTest, KeyLengthLimit) {
  http::Fields f;
  f.set("X-Metadata-" + std::string(kMaxMetadataKeyBytes, 'k'), "v");
  EXPECT_TRUE(MetadataFromHeaders(f));
  f.set("X-Metadata-" + std::string(kMaxMetadataKeyBytes + 1, 'k'), "v");
  EXPECT_FALSE(MetadataFromHeaders(f));
}

TEST(MetadataFromHeadersTest, TotalSizeLimit) {
  http::Fields f;
  f.set("X-Metadata-a", std::string(2000, 'v'));
  f.set("X-Metadata-b", std::string(2000, 'v'));
  EXPECT_TRUE(MetadataFromHeaders(f));
  f.set("X-Metadata-c", std::string(100, 'v'));
  auto md = MetadataFromHeaders(f);
  ASSERT_FALSE(md);
  EXPECT_EQ(md.error().code(), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace kiln::envd
