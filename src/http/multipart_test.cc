#include "http/multipart.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace kiln::http {
namespace {

// One parsed part as the sink saw it.
struct SeenPart {
  std::string name;
  std::optional<std::string> filename;
  std::string content_type;
  std::string data;
  bool ended = false;

  bool operator==(const SeenPart&) const = default;
};

class RecordingSink : public MultipartSink {
 public:
  Status OnPartBegin(const MultipartPart& part) override {
    if (!parts.empty()) {
      EXPECT_TRUE(parts.back().ended);
    }
    SeenPart p;
    p.name = part.name;
    p.filename = part.filename;
    p.content_type = std::string(part.Header("content-type"));
    parts.push_back(std::move(p));
    return Status();
  }
  Status OnPartData(std::string_view data) override {
    EXPECT_FALSE(parts.empty());
    EXPECT_FALSE(parts.back().ended);
    parts.back().data += data;
    if (fail_on_data && parts.back().data.size() > 0) {
      return Fail(Errc::kResourceExhausted, "disk full");
    }
    return Status();
  }
  Status OnPartEnd() override {
    EXPECT_FALSE(parts.empty());
    parts.back().ended = true;
    return Status();
  }

  std::vector<SeenPart> parts;
  bool fail_on_data = false;
};

constexpr std::string_view kBoundary = "----formdata-undici-0123456789";

std::string Part(std::string_view headers, std::string_view data) {
  return "--" + std::string(kBoundary) + "\r\n" + std::string(headers) + "\r\n" +
         std::string(data) + "\r\n";
}

std::string Close() { return "--" + std::string(kBoundary) + "--\r\n"; }

std::string TwoFiles() {
  return Part("Content-Disposition: form-data; name=\"file\"; filename=\"/home/user/a b.txt\"\r\n"
              "Content-Type: text/plain\r\n",
              "hello\r\nworld") +
         Part("Content-Disposition: form-data; name=\"file\"; filename=\"rel/b.bin\"\r\n"
              "Content-Type: application/octet-stream\r\n",
              std::string("\0\r\n--x\r\n\r\n", 11)) +
         Close();
}

// Parses `body` fed in the given pieces; returns the parts, or the error.
Result<std::vector<SeenPart>> ParsePieces(const std::vector<std::string_view>& pieces,
                                          std::string_view boundary = kBoundary) {
  RecordingSink sink;
  MultipartParser parser{std::string(boundary), sink};
  for (std::string_view piece : pieces) KILN_TRY(parser.Feed(piece));
  KILN_TRY(parser.Finish());
  return sink.parts;
}

Result<std::vector<SeenPart>> Parse(std::string_view body) { return ParsePieces({body}); }

TEST(ParseMediaTypeTest, LowerCasesTypeAndParamNames) {
  auto mt = ParseMediaType("Multipart/Form-Data; Boundary=abc ; charset=\"utf-8\"");
  ASSERT_TRUE(mt);
  EXPECT_EQ(mt->type, "multipart/form-data");
  EXPECT_EQ(mt->params["boundary"], "abc");
  EXPECT_EQ(mt->params["charset"], "utf-8");
}

TEST(ParseMediaTypeTest, QuotedValuesKeepSemicolonsSpacesAndSlashes) {
  auto mt = ParseMediaType(R"(form-data; name="file"; filename="/a; b/c d.txt")");
  ASSERT_TRUE(mt);
  EXPECT_EQ(mt->type, "form-data");
  EXPECT_EQ(mt->params["filename"], "/a; b/c d.txt");
}

TEST(ParseMediaTypeTest, BackslashEscapesOnlyTSpecials) {
  auto mt = ParseMediaType(R"(form-data; filename="a\"b\\c\d")");
  ASSERT_TRUE(mt);
  EXPECT_EQ(mt->params["filename"], R"(a"b\c\d)");
}

TEST(ParseMediaTypeTest, RejectsMalformed) {
  EXPECT_FALSE(ParseMediaType(""));
  EXPECT_FALSE(ParseMediaType("; a=b"));
  EXPECT_FALSE(ParseMediaType("form-data; filename=\"unterminated"));
  EXPECT_FALSE(ParseMediaType("form-data; novalue"));
  EXPECT_FALSE(ParseMediaType("form-data; a=\"x\"junk"));
  EXPECT_FALSE(ParseMediaType("text plain"));
}

TEST(ParseMediaTypeTest, AllowsTrailingSemicolon) {
  auto mt = ParseMediaType("application/octet-stream;");
  ASSERT_TRUE(mt);
  EXPECT_EQ(mt->type, "application/octet-stream");
  EXPECT_TRUE(mt->params.empty());
}

TEST(MultipartBoundaryTest, ExtractsPlainAndQuoted) {
  EXPECT_EQ(MultipartBoundary("multipart/form-data; boundary=----abc").value(), "----abc");
  EXPECT_EQ(MultipartBoundary("multipart/form-data; boundary=\"a b:c\"").value(), "a b:c");
}

TEST(MultipartBoundaryTest, RejectsMissingOrBad) {
  EXPECT_FALSE(MultipartBoundary("multipart/form-data"));
  EXPECT_FALSE(MultipartBoundary("multipart/form-data; boundary="));
  EXPECT_FALSE(MultipartBoundary("multipart/form-data; boundary=\"\""));
  EXPECT_FALSE(MultipartBoundary("application/json; boundary=x"));
  EXPECT_FALSE(MultipartBoundary("multipart/form-data; boundary=" + std::string(201, 'a')));
}

TEST(MultipartParserTest, ParsesTwoFiles) {
  auto parts = Parse(TwoFiles());
  ASSERT_TRUE(parts) << parts.error().message();
  ASSERT_EQ(parts->size(), 2u);
  EXPECT_EQ((*parts)[0].name, "file");
  EXPECT_EQ((*parts)[0].filename, "/home/user/a b.txt");
  EXPECT_EQ((*parts)[0].content_type, "text/plain");
  EXPECT_EQ((*parts)[0].data, "hello\r\nworld");
  EXPECT_EQ((*parts)[1].filename, "rel/b.bin");
  EXPECT_EQ((*parts)[1].data, std::string("\0\r\n--x\r\n\r\n", 11));
  EXPECT_TRUE((*parts)[1].ended);
}

TEST(MultipartParserTest, EverySplitPointGivesTheSameParts) {
  std::string body = "preamble\r\n" + TwoFiles() + "epilogue";
  auto whole = Parse(body);
  ASSERT_TRUE(whole) << whole.error().message();
  for (size_t i = 0; i <= body.size(); ++i) {
    std::string_view v = body;
    auto split = ParsePieces({v.substr(0, i), v.substr(i)});
    ASSERT_TRUE(split) << "split at " << i << ": " << split.error().message();
    EXPECT_EQ(*split, *whole) << "split at " << i;
  }
}

TEST(MultipartParserTest, ByteByByteGivesTheSameParts) {
  std::string body = TwoFiles();
  std::vector<std::string_view> pieces;
  for (size_t i = 0; i < body.size(); ++i) pieces.push_back(std::string_view(body).substr(i, 1));
  auto parts = ParsePieces(pieces);
  ASSERT_TRUE(parts) << parts.error().message();
  EXPECT_EQ(*parts, *Parse(body));
}

TEST(MultipartParserTest, RandomSplitsGiveTheSameParts) {
  std::string body = TwoFiles();
  auto whole = Parse(body);
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::string_view> pieces;
    for (size_t i = 0; i < body.size();) {
      size_t n = std::uniform_int_distribution<size_t>(0, 40)(rng);
      pieces.push_back(std::string_view(body).substr(i, n));
      i += n;
    }
    auto parts = ParsePieces(pieces);
    ASSERT_TRUE(parts) << parts.error().message();
    EXPECT_EQ(*parts, *whole);
  }
}

TEST(MultipartParserTest, SkipsPreambleAndEpilogue) {
  auto parts = Parse("This is a preamble --" + std::string(kBoundary) + " not yet\r\n" +
                     Part("Content-Disposition: form-data; name=\"a\"\r\n", "x") + Close() +
                     "epilogue --" + std::string(kBoundary) + "\r\ngarbage");
  ASSERT_TRUE(parts) << parts.error().message();
  ASSERT_EQ(parts->size(), 1u);
  EXPECT_EQ((*parts)[0].name, "a");
  EXPECT_EQ((*parts)[0].data, "x");
}

TEST(MultipartParserTest, EmptyPartAndPartWithoutHeaders) {
  auto parts = Parse(Part("Content-Disposition: form-data; name=\"file\"; filename=\"e\"\r\n", "") +
                     Part("", "naked") + Close());
  ASSERT_TRUE(parts) << parts.error().message();
  ASSERT_EQ(parts->size(), 2u);
  EXPECT_EQ((*parts)[0].data, "");
  EXPECT_TRUE((*parts)[0].ended);
  EXPECT_EQ((*parts)[1].name, "");
  EXPECT_FALSE((*parts)[1].filename);
  EXPECT_EQ((*parts)[1].data, "naked");
}

TEST(MultipartParserTest, BoundaryLookalikesAreContent) {
  std::string data = "--" + std::string(kBoundary) + " \r\n" +  // no CRLF before it
                     "\r\n--" + std::string(kBoundary) + "X\r\n" +  // longer boundary
                     "\r\n--" + std::string(kBoundary) + "-x" +     // single dash
                     "\r\n--" + std::string(kBoundary) + " x\r\n";  // text after padding
  auto parts = Parse(Part("", data) + Close());
  ASSERT_TRUE(parts) << parts.error().message();
  ASSERT_EQ(parts->size(), 1u);
  EXPECT_EQ((*parts)[0].data, data);
}

TEST(MultipartParserTest, AcceptsTransportPaddingAfterBoundary) {
  std::string body = "--" + std::string(kBoundary) + " \t \r\n\r\nabc\r\n--" +
                     std::string(kBoundary) + "--";
  auto parts = Parse(body);
  ASSERT_TRUE(parts) << parts.error().message();
  ASSERT_EQ(parts->size(), 1u);
  EXPECT_EQ((*parts)[0].data, "abc");
}

TEST(MultipartParserTest, FoldedHeaderIsJoined) {
  auto parts = Parse(Part("Content-Disposition: form-data;\r\n name=\"file\"; filename=\"f\"\r\n",
                          "d") +
                     Close());
  ASSERT_TRUE(parts) << parts.error().message();
  EXPECT_EQ((*parts)[0].name, "file");
  EXPECT_EQ((*parts)[0].filename, "f");
}

TEST(MultipartParserTest, ClosingBoundaryOnlyMeansNoParts) {
  auto parts = Parse(Close());
  ASSERT_TRUE(parts) << parts.error().message();
  EXPECT_TRUE(parts->empty());
}

TEST(MultipartParserTest, MissingClosingBoundaryFails) {
  std::string body = Part("", "abc");
  auto parts = Parse(body);
  ASSERT_FALSE(parts);
  EXPECT_EQ(parts.error().code(), Errc::kInvalidArgument);
  EXPECT_FALSE(Parse(body + "--" + std::string(kBoundary)));
}

TEST(MultipartParserTest, NoBoundaryAtAllFails) {
  EXPECT_FALSE(Parse("just some bytes"));
  EXPECT_FALSE(Parse(""));
}

TEST(MultipartParserTest, WrongBoundaryFails) {
  EXPECT_FALSE(ParsePieces({TwoFiles()}, "other"));
}

TEST(MultipartParserTest, HeaderWithoutColonFails) {
  auto parts = Parse(Part("Content-Disposition form-data\r\n", "x") + Close());
  ASSERT_FALSE(parts);
  EXPECT_EQ(parts.error().code(), Errc::kInvalidArgument);
}

TEST(MultipartParserTest, BadContentDispositionFails) {
  EXPECT_FALSE(Parse(Part("Content-Disposition: form-data; filename=\"x\r\n", "x") + Close()));
}

TEST(MultipartParserTest, HugeHeaderBlockFailsWithoutBuffering) {
  RecordingSink sink;
  MultipartParser parser{std::string(kBoundary), sink};
  ASSERT_TRUE(parser.Feed("--" + std::string(kBoundary) + "\r\nX-Big: "));
  Status st;
  for (int i = 0; i < 100 && st; ++i) st = parser.Feed(std::string(1024, 'a'));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kInvalidArgument);
  // Once failed, it stays failed.
  EXPECT_FALSE(parser.Feed(Close()));
  EXPECT_FALSE(parser.Finish());
}

TEST(MultipartParserTest, SinkErrorStopsParsingWithItsCode) {
  RecordingSink sink;
  sink.fail_on_data = true;
  MultipartParser parser{std::string(kBoundary), sink};
  Status st = parser.Feed(TwoFiles());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kResourceExhausted);
  EXPECT_EQ(sink.parts.size(), 1u);
}

TEST(MultipartParserTest, LargeBodyIsStreamedInPieces) {
  RecordingSink sink;
  MultipartParser parser{std::string(kBoundary), sink};
  ASSERT_TRUE(parser.Feed("--" + std::string(kBoundary) + "\r\n\r\n"));
  std::string chunk(64 * 1024, 'z');
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(parser.Feed(chunk));
  ASSERT_TRUE(parser.Feed("\r\n" + Close()));
  ASSERT_TRUE(parser.Finish());
  ASSERT_EQ(sink.parts.size(), 1u);
  EXPECT_EQ(sink.parts[0].data.size(), 64u * chunk.size());
  EXPECT_TRUE(parser.done());
}

TEST(MultipartParserTest, RandomGarbageNeverCrashes) {
  std::mt19937 rng(7);
  std::string alphabet = "-\r\n ab\"=:;" + std::string(kBoundary);
  for (int round = 0; round < 2000; ++round) {
    std::string body;
    size_t n = std::uniform_int_distribution<size_t>(0, 300)(rng);
    for (size_t i = 0; i < n; ++i) {
      body += alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
    }
    if (round % 3 == 0) body = "--" + std::string(kBoundary) + "\r\n" + body;
    (void)Parse(body);
    std::string_view v = body;
    (void)ParsePieces({v.substr(0, n / 2), v.substr(n / 2)});
  }
}

}  // namespace
}  // namespace kiln::http
