#include "base/encoding.h"

#include <gtest/gtest.h>

#include <string>

namespace kiln {
namespace {

using namespace std::string_literals;

// RFC 4648 section 10 test vectors.
TEST(Base64Test, EncodesRfc4648Vectors) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(Base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
}

TEST(Base64Test, EncodesWithoutPadding) {
  EXPECT_EQ(Base64EncodeNoPad("f"), "Zg");
  EXPECT_EQ(Base64EncodeNoPad("fo"), "Zm8");
  EXPECT_EQ(Base64EncodeNoPad("foo"), "Zm9v");
}

TEST(Base64Test, EncodesHighBytesWithStandardAlphabet) {
  EXPECT_EQ(Base64Encode("\xfb\xff\xbf"), "+/+/");
  EXPECT_EQ(Base64Encode("\x00\x00"s), "AAA=");
}

TEST(Base64Test, DecodesPaddedAndUnpadded) {
  EXPECT_EQ(Base64Decode("Zm9vYg=="), "foob");
  EXPECT_EQ(Base64Decode("Zm9vYg"), "foob");
  EXPECT_EQ(Base64Decode("Zm9vYmE="), "fooba");
  EXPECT_EQ(Base64Decode("Zm9vYmE"), "fooba");
  EXPECT_EQ(Base64Decode(""), "");
}

TEST(Base64Test, DecodesUrlSafeAlphabet) {
  EXPECT_EQ(Base64Decode("-_-_"), "\xfb\xff\xbf");
  EXPECT_EQ(Base64Decode("+/+/"), "\xfb\xff\xbf");
}

TEST(Base64Test, RoundTripsAllByteValues) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t n = 0; n <= all.size(); n += 37) {
    std::string part = all.substr(0, n);
    EXPECT_EQ(Base64Decode(Base64Encode(part)), part);
    EXPECT_EQ(Base64Decode(Base64EncodeNoPad(part)), part);
  }
}

TEST(Base64Test, RejectsMalformedInput) {
  EXPECT_EQ(Base64Decode("Zm9v!"), std::nullopt);
  EXPECT_EQ(Base64Decode("Zm 9v"), std::nullopt);    // no whitespace
  EXPECT_EQ(Base64Decode("Zm9v\n"), std::nullopt);
  EXPECT_EQ(Base64Decode("Z"), std::nullopt);        // one leftover char carries < 8 bits
  EXPECT_EQ(Base64Decode("Zm9vY"), std::nullopt);
  EXPECT_EQ(Base64Decode("Zg==Zg=="), std::nullopt);  // padding only at the end
  EXPECT_EQ(Base64Decode("Z\x80=="), std::nullopt);
  EXPECT_EQ(Base64Decode("Zm9v\0"s), std::nullopt);
}

TEST(Rfc3339Test, FormatsEpoch) { EXPECT_EQ(FormatRfc3339(0, 0), "1970-01-01T00:00:00.000Z"); }

TEST(Rfc3339Test, FormatsMillisecondsTruncated) {
  EXPECT_EQ(FormatRfc3339(1735689600, 123999999), "2025-01-01T00:00:00.123Z");
  EXPECT_EQ(FormatRfc3339(951782400 + 86399, 5000000), "2000-02-29T23:59:59.005Z");
}

TEST(HexTest, EncodesLowerCase) {
  EXPECT_EQ(HexEncode(""), "");
  EXPECT_EQ(HexEncode("\x00\x7f\xab\xff"s), "007fabff");
}

TEST(ConstantTimeEqualsTest, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("secret-token", "secret-token"));
  EXPECT_FALSE(ConstantTimeEquals("secret-token", "secret-tokeN"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret-token"));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_FALSE(ConstantTimeEquals("a\0b"s, "a\0c"s));
}

}  // namespace
}  // namespace kiln
