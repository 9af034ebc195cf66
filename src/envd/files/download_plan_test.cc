#include "envd/files/download_plan.h"

#include <gtest/gtest.h>

namespace kiln::envd {
namespace {

namespace bhttp = boost::beast::http;

constexpr FileVersion kFile{1000, 1700000000, 123456789};

http::RequestHead Get(std::vector<std::pair<std::string, std::string>> headers = {}) {
  http::RequestHead head;
  head.method = http::Verb::get;
  head.path = "/files";
  for (auto& [k, v] : headers) head.headers.set(k, v);
  return head;
}

std::string H(const DownloadPlan& p, bhttp::field f) {
  auto it = p.headers.find(f);
  return it == p.headers.end() ? std::string() : std::string(it->value());
}

TEST(ContentTypeTest, ByExtension) {
  EXPECT_EQ(ContentTypeForPath("/a/b.TXT"), "text/plain; charset=utf-8");
  EXPECT_EQ(ContentTypeForPath("x.json"), "application/json");
  EXPECT_EQ(ContentTypeForPath("/a.b/noext"), "application/octet-stream");
  EXPECT_EQ(ContentTypeForPath("/home/.bashrc"), "application/octet-stream");
  EXPECT_TRUE(IsCompressedFormat("/x/y.tar.gz"));
  EXPECT_FALSE(IsCompressedFormat("/x/y.txt"));
}

TEST(ContentDispositionTest, TokenQuotedAndEncoded) {
  EXPECT_EQ(InlineContentDisposition("a.txt"), "inline; filename=a.txt");
  EXPECT_EQ(InlineContentDisposition("a b\"c.txt"), "inline; filename=\"a b\\\"c.txt\"");
  EXPECT_EQ(InlineContentDisposition("caf\xc3\xa9 1.txt"),
            "inline; filename*=utf-8''caf%C3%A9%201.txt");
  EXPECT_EQ(InlineContentDisposition("new\nline"), "inline; filename*=utf-8''new%0Aline");
}

TEST(HttpDateTest, FormatAndParse) {
  EXPECT_EQ(FormatHttpDate(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(ParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
  EXPECT_FALSE(ParseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"));
  EXPECT_FALSE(ParseHttpDate("Sun, 06 Foo 1994 08:49:37 GMT"));
  EXPECT_FALSE(ParseHttpDate(""));
}

TEST(ParseRangeTest, Forms) {
  auto r = ParseRange("bytes=0-9", 100);
  EXPECT_EQ(r.kind, ByteRange::Kind::kPartial);
  EXPECT_EQ(r.offset, 0u);
  EXPECT_EQ(r.length, 10u);
  r = ParseRange("bytes=90-", 100);
  EXPECT_EQ(r.offset, 90u);
  EXPECT_EQ(r.length, 10u);
  r = ParseRange("bytes=-5", 100);
  EXPECT_EQ(r.offset, 95u);
  EXPECT_EQ(r.length, 5u);
  r = ParseRange("bytes=-500", 100);
  EXPECT_EQ(r.offset, 0u);
  EXPECT_EQ(r.length, 100u);
  r = ParseRange("bytes=50-5000", 100);
  EXPECT_EQ(r.offset, 50u);
  EXPECT_EQ(r.length, 50u);
}

TEST(ParseRangeTest, Unsatisfiable) {
  EXPECT_EQ(ParseRange("bytes=100-", 100).kind, ByteRange::Kind::kUnsatisfiable);
  EXPECT_EQ(ParseRange("bytes=-0", 100).kind, ByteRange::Kind::kUnsatisfiable);
  EXPECT_EQ(ParseRange("bytes=0-", 0).kind, ByteRange::Kind::kUnsatisfiable);
  EXPECT_EQ(ParseRange("bytes=-3", 0).kind, ByteRange::Kind::kUnsatisfiable);
}

TEST(ParseRangeTest, MalformedOrMultipleMeansWhole) {
  for (std::string_view h : {"", "bytes", "items=0-1", "bytes=5-3", "bytes=a-b", "bytes=0-1,3-4",
                             "bytes=-", "bytes=1", "bytes=99999999999999999999999-"}) {
    EXPECT_EQ(ParseRange(h, 100).kind, ByteRange::Kind::kWhole) << h;
  }
}

TEST(AcceptEncodingTest, Qualities) {
  auto p = ParseAcceptEncoding("");
  EXPECT_EQ(p.gzip, 0);
  EXPECT_EQ(p.identity, 1000);
  p = ParseAcceptEncoding("gzip, deflate, br");
  EXPECT_EQ(p.gzip, 1000);
  EXPECT_EQ(p.identity, 1000);
  p = ParseAcceptEncoding("gzip;q=0.5, identity;q=0.8");
  EXPECT_EQ(p.gzip, 500);
  EXPECT_EQ(p.identity, 800);
  p = ParseAcceptEncoding("br, *;q=0");
  EXPECT_EQ(p.gzip, 0);
  EXPECT_EQ(p.identity, 0);
  p = ParseAcceptEncoding("*");
  EXPECT_EQ(p.gzip, 1000);
  p = ParseAcceptEncoding("GZIP;Q=0.001");
  EXPECT_EQ(p.gzip, 1);
}

TEST(PlanDownloadTest, PlainRequestSendsWholeFileUncompressed) {
  DownloadPlan p = PlanDownload(Get(), "/home/user/a.txt", kFile);
  EXPECT_EQ(p.status, 200u);
  EXPECT_EQ(p.offset, 0u);
  EXPECT_EQ(p.length, 1000u);
  EXPECT_FALSE(p.gzip);
  EXPECT_EQ(H(p, bhttp::field::content_type), "text/plain; charset=utf-8");
  EXPECT_EQ(H(p, bhttp::field::content_disposition), "inline; filename=a.txt");
  EXPECT_EQ(H(p, bhttp::field::accept_ranges), "bytes");
  EXPECT_EQ(H(p, bhttp::field::content_encoding), "");
  EXPECT_FALSE(H(p, bhttp::field::etag).empty());
}

TEST(PlanDownloadTest, GzipWhenAccepted) {
  DownloadPlan p = PlanDownload(Get({{"Accept-Encoding", "gzip"}}), "/a.txt", kFile);
  EXPECT_EQ(p.status, 200u);
  EXPECT_TRUE(p.gzip);
  EXPECT_EQ(H(p, bhttp::field::content_encoding), "gzip");
}

TEST(PlanDownloadTest, NoGzipForEmptyOrCompressedFilesOrPreferredIdentity) {
  EXPECT_FALSE(PlanDownload(Get({{"Accept-Encoding", "gzip"}}), "/a.txt", {0, 1, 0}).gzip);
  EXPECT_FALSE(PlanDownload(Get({{"Accept-Encoding", "gzip"}}), "/a.zip", kFile).gzip);
  EXPECT_FALSE(
      PlanDownload(Get({{"Accept-Encoding", "gzip;q=0.5, identity"}}), "/a.txt", kFile).gzip);
  // ... unless identity is ruled out.
  EXPECT_TRUE(
      PlanDownload(Get({{"Accept-Encoding", "gzip, identity;q=0"}}), "/a.zip", kFile).gzip);
}

TEST(PlanDownloadTest, NothingAcceptableIs406) {
  DownloadPlan p = PlanDownload(Get({{"Accept-Encoding", "br, *;q=0"}}), "/a.txt", kFile);
  EXPECT_EQ(p.status, 406u);
}

TEST(PlanDownloadTest, RangeIsPartialAndUncompressed) {
  DownloadPlan p =
      PlanDownload(Get({{"Range", "bytes=10-19"}, {"Accept-Encoding", "gzip"}}), "/a", kFile);
  EXPECT_EQ(p.status, 206u);
  EXPECT_EQ(p.offset, 10u);
  EXPECT_EQ(p.length, 10u);
  EXPECT_FALSE(p.gzip);
  EXPECT_EQ(H(p, bhttp::field::content_range), "bytes 10-19/1000");
}

TEST(PlanDownloadTest, UnsatisfiableRangeIs416) {
  DownloadPlan p = PlanDownload(Get({{"Range", "bytes=1000-"}}), "/a", kFile);
  EXPECT_EQ(p.status, 416u);
  EXPECT_EQ(p.length, 0u);
  EXPECT_EQ(H(p, bhttp::field::content_range), "bytes */1000");
}

TEST(PlanDownloadTest, IfNoneMatchAndIfModifiedSince) {
  std::string etag = H(PlanDownload(Get(), "/a", kFile), bhttp::field::etag);
  EXPECT_EQ(PlanDownload(Get({{"If-None-Match", etag}}), "/a", kFile).status, 304u);
  EXPECT_EQ(PlanDownload(Get({{"If-None-Match", "\"x\", W/" + etag}}), "/a", kFile).status,
            304u);
  EXPECT_EQ(PlanDownload(Get({{"If-None-Match", "\"other\""}}), "/a", kFile).status, 200u);
  std::string lm = FormatHttpDate(kFile.mtime_sec);
  EXPECT_EQ(PlanDownload(Get({{"If-Modified-Since", lm}}), "/a", kFile).status, 304u);
  EXPECT_EQ(PlanDownload(Get({{"If-Modified-Since", FormatHttpDate(kFile.mtime_sec - 1)}}),
                         "/a", kFile)
                .status,
            200u);
  // If-None-Match wins over If-Modified-Since.
  EXPECT_EQ(
      PlanDownload(Get({{"If-None-Match", "\"other\""}, {"If-Modified-Since", lm}}), "/a", kFile)
          .status,
      200u);
}

TEST(PlanDownloadTest, IfRangeMismatchSendsWholeFile) {
  std::string etag = H(PlanDownload(Get(), "/a", kFile), bhttp::field::etag);
  EXPECT_EQ(PlanDownload(Get({{"Range", "bytes=0-1"}, {"If-Range", etag}}), "/a", kFile).status,
            206u);
  EXPECT_EQ(
      PlanDownload(Get({{"Range", "bytes=0-1"}, {"If-Range", "\"stale\""}}), "/a", kFile).status,
      200u);
  EXPECT_EQ(PlanDownload(Get({{"Range", "bytes=0-1"},
                              {"If-Range", FormatHttpDate(kFile.mtime_sec)}}),
                         "/a", kFile)
                .status,
            206u);
}

}  // namespace
}  // namespace kiln::envd
