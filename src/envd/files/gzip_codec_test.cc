#include "envd/files/gzip_codec.h"

#include <gtest/gtest.h>

#include <random>

namespace kiln::envd {
namespace {

std::string Compress(std::string_view data, size_t piece = 1000) {
  GzipEncoder enc;
  std::string out;
  for (size_t i = 0; i < data.size(); i += piece) {
    auto part = enc.Write(data.substr(i, piece));
    EXPECT_TRUE(part);
    out += *part;
  }
  auto tail = enc.Finish();
  EXPECT_TRUE(tail);
  return out + *tail;
}

Result<std::string> Decompress(std::string_view gz, size_t piece) {
  std::string out;
  GzipDecoder dec([&](std::string_view d) {
    out += d;
    return Status();
  });
  for (size_t i = 0; i < gz.size(); i += piece) KILN_TRY(dec.Write(gz.substr(i, piece)));
  KILN_TRY(dec.Finish());
  return out;
}

std::string RandomText(size_t n) {
  std::mt19937 rng(1);
  std::string s;
  for (size_t i = 0; i < n; ++i) s += "abc \n\x00\xff"[rng() % 7];
  return s;
}

TEST(GzipCodecTest, RoundTripInVariousPieceSizes) {
  std::string data = RandomText(300000);
  std::string gz = Compress(data, 4096);
  ASSERT_GE(gz.size(), 18u);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
  for (size_t piece : {1ul, 7ul, 4096ul, gz.size()}) {
    auto back = Decompress(gz, piece);
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(*back, data) << "piece " << piece;
  }
}

TEST(GzipCodecTest, EmptyInputRoundTrips) {
  std::string gz = Compress("");
  auto back = Decompress(gz, 3);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, "");
}

TEST(GzipCodecTest, HighlyCompressibleOutputIsDeliveredInBoundedPieces) {
  std::string data(20 << 20, 'a');
  std::string gz = Compress(data, 1 << 20);
  EXPECT_LT(gz.size(), 100000u);
  size_t total = 0, largest = 0;
  GzipDecoder dec([&](std::string_view d) {
    total += d.size();
    largest = std::max(largest, d.size());
    return Status();
  });
  ASSERT_TRUE(dec.Write(gz));
  ASSERT_TRUE(dec.Finish());
  EXPECT_EQ(total, data.size());
  EXPECT_LE(largest, 64u * 1024);
}

TEST(GzipCodecTest, ConcatenatedMembersAreOneStream) {
  std::string gz = Compress("hello ") + Compress("world");
  auto back = Decompress(gz, 5);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, "hello world");
}

TEST(GzipCodecTest, TruncatedStreamFailsAtFinish) {
  std::string gz = Compress(RandomText(5000));
  auto back = Decompress(std::string_view(gz).substr(0, gz.size() - 4), 100);
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code(), Errc::kInvalidArgument);
}

TEST(GzipCodecTest, NotGzipFails) {
  auto back = Decompress("this is plain text, not gzip", 4);
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code(), Errc::kInvalidArgument);
  EXPECT_FALSE(Decompress("", 1));
}

TEST(GzipCodecTest, TrailingGarbageFails) {
  EXPECT_FALSE(Decompress(Compress("x") + "garbage!", 64));
}

TEST(GzipCodecTest, CorruptedBodyFails) {
  std::string gz = Compress(RandomText(5000));
  gz[gz.size() / 2] ^= 0x55;
  gz[gz.size() / 2 + 1] ^= 0x55;
  EXPECT_FALSE(Decompress(gz, 256));
}

TEST(GzipCodecTest, SinkErrorIsReturned) {
  std::string gz = Compress("abc");
  GzipDecoder dec([](std::string_view) { return Status(Fail(Errc::kResourceExhausted, "full")); });
  Status st = dec.Write(gz);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kResourceExhausted);
}

}  // namespace
}  // namespace kiln::envd
