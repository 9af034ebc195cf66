// Table formatting, relative times, the progress display, endpoints and cp operands.

#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "base/encoding.h"
#include "base/unique_fd.h"
#include "cli/copy.h"
#include "cli/endpoint.h"
#include "cli/progress.h"
#include "cli/table.h"

namespace kiln::cli {
namespace {

using namespace std::chrono_literals;

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  off_t off = 0;
  for (;;) {
    ssize_t n = pread(fd, buf, sizeof buf, off);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return out;
}

TEST(TableTest, AlignsColumnsAndTrimsTheLastOne) {
  std::string t = FormatTable({"ID", "STATE", "META"}, {{"abc", "running", "-"},
                                                       {"x", "paused", "k=v"}});
  EXPECT_EQ(t,
            "ID   STATE    META\n"
            "abc  running  -\n"
            "x    paused   k=v\n");
}

TEST(TableTest, CountsCodePointsAndNeutralizesControlCharacters) {
  std::string t = FormatTable({"A", "B"}, {{"\xc3\xa9t\xc3\xa9", "1"}, {"a\x1b[2J", "2"}, {"z"}});
  EXPECT_EQ(t,
            "A      B\n"
            "\xc3\xa9t\xc3\xa9    1\n"
            "a?[2J  2\n"
            "z\n");
}

TEST(TableTest, RelativeTimes) {
  auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
  auto at = [](int64_t s) { return FormatRfc3339(s, 0); };
  EXPECT_EQ(RelativeTime(at(1'700'000'000 - 5), now), "5s ago");
  EXPECT_EQ(RelativeTime(at(1'700'000'000 - 300), now), "5m ago");
  EXPECT_EQ(RelativeTime(at(1'700'000'000 - 7200), now), "2h ago");
  EXPECT_EQ(RelativeTime(at(1'700'000'000 - 3 * 86400), now), "3d ago");
  EXPECT_EQ(RelativeTime(at(1'700'000'000 + 240), now), "in 4m");
  EXPECT_EQ(RelativeTime("garbage", now), "garbage");
  EXPECT_EQ(RelativeTime("", now), "-");
  EXPECT_EQ(FormatMetadata({{"b", "2"}, {"a", "1"}}), "a=1,b=2");
  EXPECT_EQ(FormatMetadata({}), "-");
}

TEST(ProgressTest, RendersBarPercentAndCutsToWidth) {
  EXPECT_EQ(RenderProgressLine("base", "download", "libc6", 42, 200),
            "[########------------]  42%  base  download  libc6");
  std::string narrow = RenderProgressLine("base", "download", "Retrieving libc6", 100, 40);
  EXPECT_EQ(narrow, "[####################] 100%  base  downl");
  EXPECT_EQ(narrow.size(), 40u);
  EXPECT_EQ(RenderProgressLine("", "", "", -5, 10), "[--------------------]   0%");
}

TEST(ProgressTest, TerminalRedrawsOneLine) {
  UniqueFd fd(memfd_create("progress", MFD_CLOEXEC));
  {
    ProgressDisplay d(fd.get(), /*tty=*/true, 60, "t");
    d.Update("download", "a", 10);
    d.Update("download", "a", 10);  // unchanged: not redrawn
    d.Update("download", "b", 5);   // never goes back
    d.Finish("done");
  }
  EXPECT_EQ(ReadAll(fd.get()),
            "\r[##------------------]  10%  t  download  a\x1b[K"
            "\r[##------------------]  10%  t  download  b\x1b[K\n"
            "done\n");
}

TEST(ProgressTest, PlainLinesOnPhaseChangesAndEveryTenPercent) {
  UniqueFd fd(memfd_create("progress", MFD_CLOEXEC));
  ProgressDisplay d(fd.get(), /*tty=*/false, 0, "build");
  d.Update("prepare", "", 0);
  d.Update("download", "libc6", 3);
  d.Update("download", "libc7", 7);
  d.Update("download", "libc8", 12);
  d.Update("done", "", 100);
  d.Finish("");
  EXPECT_EQ(ReadAll(fd.get()),
            "build: 0% prepare\n"
            "build: 3% download (libc6)\n"
            "build: 12% download (libc8)\n"
            "build: 100% done\n");
}

TEST(EndpointTest, ParsesHttpUrls) {
  auto ep = ParseEndpoint("http://127.0.0.1:3000");
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 3000);
  EXPECT_EQ(ep->host_header, "127.0.0.1:3000");
  EXPECT_EQ(ep->Target("/v2/sandboxes"), "/v2/sandboxes");
  ep = ParseEndpoint("http://kiln.example/api/");
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->port, 80);
  EXPECT_EQ(ep->host_header, "kiln.example");
  EXPECT_EQ(ep->Target("/sandboxes"), "/api/sandboxes");
  ep = ParseEndpoint("http://[::1]:8080");
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->host_header, "[::1]:8080");
}

TEST(EndpointTest, RejectsOtherUrls) {
  EXPECT_NE(ParseEndpoint("https://x").error().message().find("plain HTTP"), std::string::npos);
  EXPECT_FALSE(ParseEndpoint("127.0.0.1:3000"));
  EXPECT_FALSE(ParseEndpoint("http://"));
  EXPECT_FALSE(ParseEndpoint("http://h:0"));
  EXPECT_FALSE(ParseEndpoint("http://h:99999"));
  EXPECT_FALSE(ParseEndpoint("http://h:"));
  EXPECT_FALSE(ParseEndpoint("http://u:p@h"));
  EXPECT_FALSE(ParseEndpoint("http://h/x?y"));
  EXPECT_FALSE(ParseEndpoint("http://h\r\nX: y"));
}

TEST(CopyOperandTest, RemoteAndLocal) {
  auto r = ParseCopyOperand("abc123:/home/user/f.txt");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->remote);
  EXPECT_EQ(r->sandbox_id, "abc123");
  EXPECT_EQ(r->path, "/home/user/f.txt");
  EXPECT_EQ(ParseCopyOperand("abc:rel/x")->path, "rel/x");
  EXPECT_FALSE(ParseCopyOperand("./abc:x")->remote);
  EXPECT_FALSE(ParseCopyOperand("/tmp/a:b")->remote);
  EXPECT_FALSE(ParseCopyOperand("My:file")->remote);  // not a sandbox id
  EXPECT_FALSE(ParseCopyOperand("-")->remote);
  EXPECT_FALSE(ParseCopyOperand("abc:"));
  EXPECT_FALSE(ParseCopyOperand(""));
  EXPECT_EQ(BaseName("/a/b.txt"), "b.txt");
  EXPECT_EQ(BaseName("b.txt"), "b.txt");
  EXPECT_EQ(BaseName("/a/"), "");
}

TEST(CopyOperandTest, MultipartFraming) {
  MultipartFraming f = MakeMultipartFraming("B", "/x/\"q\"\r\n.txt");
  EXPECT_EQ(f.content_type, "multipart/form-data; boundary=B");
  EXPECT_EQ(f.head,
            "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/x/%22q%22  .txt\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n");
  EXPECT_EQ(f.tail, "\r\n--B--\r\n");
  EXPECT_NE(RandomBoundary(), RandomBoundary());
  EXPECT_EQ(RandomBoundary().size(), 5u + 32u);
}

}  // namespace
}  // namespace kiln::cli
