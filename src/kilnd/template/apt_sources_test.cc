#include "kilnd/template/apt_sources.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace kiln::kilnd::tmpl {
namespace {

TEST(AptSourcesTest, Deb822TakesFirstNonSecurityUri) {
  auto sources = ParseDeb822Sources(
      "Types: deb\n"
      "# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
      "URIs: http://deb.debian.org/debian\n"
      "Suites: bookworm bookworm-updates\n"
      "Components: main\n"
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
      "\n"
      "Types: deb\n"
      "URIs: http://deb.debian.org/debian-security\n"
      "Suites: bookworm-security\n"
      "Components: main\n");
  ASSERT_EQ(sources.size(), 2u);
  EXPECT_EQ(sources[0].uri, "http://deb.debian.org/debian");
  EXPECT_EQ(sources[0].suites, (std::vector<std::string>{"bookworm", "bookworm-updates"}));
  EXPECT_EQ(sources[0].signed_by, "/usr/share/keyrings/debian-archive-keyring.gpg");
  EXPECT_EQ(PickDebianMirror(sources), "http://deb.debian.org/debian");
}

TEST(AptSourcesTest, Deb822SkipsSecurityAndSourceOnlyStanzas) {
  auto sources = ParseDeb822Sources(
      "Types: deb\n"
      "URIs: http://security.debian.org/debian-security\n"
      "Suites: bookworm-security\n"
      "\n"
      "Types: deb-src\n"
      "URIs: http://src.example/debian\n"
      "Suites: bookworm\n"
      "\n"
      "\n"
      "types: deb-src deb\n"  // field names are case-insensitive
      "uris: http://mirror.example/debian/\n"
      "suites: bookworm\n");
  ASSERT_EQ(sources.size(), 2u);
  EXPECT_EQ(PickDebianMirror(sources), "http://mirror.example/debian");
}

TEST(AptSourcesTest, Deb822HonoursEnabledNoAndSeveralUris) {
  auto sources = ParseDeb822Sources(
      "Types: deb\n"
      "URIs: http://off.example/debian\n"
      "Suites: bookworm\n"
      "Enabled: no\n"
      "\n"
      "Types: deb\n"
      "URIs: https://a.example/debian\n"
      "  https://b.example/debian\n"
      "Suites: bookworm\n");
  ASSERT_EQ(sources.size(), 2u);
  EXPECT_EQ(sources[0].uri, "https://a.example/debian");
  EXPECT_EQ(sources[1].uri, "https://b.example/debian");
}

TEST(AptSourcesTest, Deb822SkipsThirdPartyKeyringsAndOddSchemes) {
  auto sources = ParseDeb822Sources(
      "Types: deb\n"
      "URIs: https://download.docker.com/linux/debian\n"
      "Suites: bookworm\n"
      "Signed-By: /etc/apt/keyrings/docker.asc\n"
      "\n"
      "Types: deb\n"
      "URIs: cdrom:[Debian GNU/Linux]/\n"
      "Suites: bookworm\n"
      "\n"
      "Types: deb\n"
      "URIs: mirror+file:/etc/apt/mirrors.txt\n"
      "Suites: bookworm\n"
      "\n"
      "Types: deb\n"
      "URIs: http://ftp.de.debian.org/debian\n"
      "Suites: bookworm\n"
      "Signed-By:\n"
      " -----BEGIN PGP PUBLIC KEY BLOCK-----\n"
      " .\n"
      " abc\n"
      "\n"
      "Types: deb\n"
      "URIs: file:/srv/mirror/debian\n"
      "Suites: bookworm\n");
  EXPECT_EQ(PickDebianMirror(sources), "file:/srv/mirror/debian");
}

TEST(AptSourcesTest, Deb822ToleratesGarbage) {
  auto sources = ParseDeb822Sources("no colon here\n:\nURIs:\nTypes: deb\n\x01\x02\r\n");
  EXPECT_TRUE(sources.empty());
  EXPECT_EQ(PickDebianMirror(sources), std::nullopt);
}

TEST(AptSourcesTest, OneLineFormatWithOptionsAndComments) {
  auto sources = ParseOneLineSources(
      "# deb http://commented.example/debian bookworm main\n"
      "deb-src http://src.example/debian bookworm main\n"
      "deb http://security.debian.org/debian-security bookworm-security main\n"
      "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
      "http://ftp.fr.debian.org/debian/ bookworm main # trailing comment\n"
      "deb http://later.example/debian bookworm main\n");
  ASSERT_EQ(sources.size(), 3u);
  EXPECT_EQ(sources[1].uri, "http://ftp.fr.debian.org/debian");
  EXPECT_EQ(sources[1].suites, std::vector<std::string>{"bookworm"});
  EXPECT_EQ(sources[1].signed_by, "/usr/share/keyrings/debian-archive-keyring.gpg");
  EXPECT_EQ(PickDebianMirror(sources), "http://ftp.fr.debian.org/debian");
}

TEST(AptSourcesTest, OneLineFormatSpacedBracketsAndMalformedLines) {
  auto sources = ParseOneLineSources(
      "deb [ signed-by=/etc/apt/keyrings/other.gpg ] https://other.example/debian bookworm main\n"
      "deb [unterminated http://x.example/debian bookworm\n"
      "deb http://only-uri.example/debian\n"
      "debhttp://glued.example/debian bookworm\n"
      "\tdeb\thttp://tabs.example/debian\tbookworm\tmain\n");
  ASSERT_EQ(sources.size(), 2u);
  EXPECT_EQ(sources[0].signed_by, "/etc/apt/keyrings/other.gpg");
  EXPECT_EQ(PickDebianMirror(sources), "http://tabs.example/debian");
}

class HostMirrorTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-apt-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::filesystem::create_directories(dir_ / "sources.list.d");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& rel, const std::string& text) { std::ofstream(dir_ / rel) << text; }

  std::filesystem::path dir_;
};

TEST_F(HostMirrorTest, DefaultWhenNothingIsConfigured) {
  EXPECT_EQ(HostDebianMirror(dir_), kDefaultDebianMirror);
  EXPECT_EQ(HostDebianMirror(dir_ / "missing"), kDefaultDebianMirror);
}

TEST_F(HostMirrorTest, SourcesFilesComeFirstInNameOrder) {
  Write("sources.list", "deb http://list.example/debian bookworm main\n");
  Write("sources.list.d/b.sources", "Types: deb\nURIs: http://b.example/debian\nSuites: x\n");
  Write("sources.list.d/a.sources", "Types: deb\nURIs: http://a.example/debian\nSuites: x\n");
  Write("sources.list.d/0.sources.disabled", "Types: deb\nURIs: http://off.example/debian\n");
  EXPECT_EQ(HostDebianMirror(dir_), "http://a.example/debian");
}

TEST_F(HostMirrorTest, FallsBackToSourcesListThenListFiles) {
  Write("sources.list.d/sec.sources",
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n");
  Write("sources.list.d/z.list", "deb http://z.example/debian bookworm main\n");
  EXPECT_EQ(HostDebianMirror(dir_), "http://z.example/debian");
  Write("sources.list", "deb http://list.example/debian bookworm main\n");
  EXPECT_EQ(HostDebianMirror(dir_), "http://list.example/debian");
}

TEST(HostMirrorRealTest, ThisHostsMirrorIsAnHttpUri) {
  std::string mirror = HostDebianMirror();
  EXPECT_TRUE(mirror.starts_with("http://") || mirror.starts_with("https://") ||
              mirror.starts_with("file:/"))
      << mirror;
}

}  // namespace
}  // namespace kiln::kilnd::tmpl
