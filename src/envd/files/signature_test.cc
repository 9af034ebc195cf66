#include "envd/files/signature.h"

#include <gtest/gtest.h>

namespace kiln::envd {
namespace {

constexpr std::string_view kToken = "0tQG31xiMp0IOQfaz9dcwi72L1CPo8e0";

http::RequestHead Head(std::vector<std::pair<std::string, std::string>> query) {
  http::RequestHead head;
  head.method = http::Verb::get;
  head.path = "/files";
  head.query = std::move(query);
  return head;
}

TEST(FileUrlSignatureTest, MatchesTheSdkVector) {
  EXPECT_EQ(FileUrlSignature("hello.txt", FileOp::kRead, "user", kToken),
            "v1_gUtH/s9YCJWgCizjfUxuWfhFE4QSydOWEIIvfLwDr6E");
}

TEST(FileUrlSignatureTest, ExpirationAndOperationChangeIt) {
  std::string plain = FileUrlSignature("hello.txt", FileOp::kRead, "user", kToken);
  EXPECT_NE(FileUrlSignature("hello.txt", FileOp::kWrite, "user", kToken), plain);
  EXPECT_NE(FileUrlSignature("hello.txt", FileOp::kRead, "user", kToken, "1700000000"), plain);
  EXPECT_NE(FileUrlSignature("hello.txt", FileOp::kRead, "", kToken), plain);
  EXPECT_EQ(plain.find('='), std::string::npos);
}

TEST(CheckFilesAccessTest, NoTokenAllowsEverything) {
  EXPECT_TRUE(CheckFilesAccess(Head({}), std::nullopt, FileOp::kRead, 0));
}

TEST(CheckFilesAccessTest, HeaderTokenMustMatch) {
  std::optional<std::string> token(kToken);
  http::RequestHead head = Head({});
  head.headers.set("X-Access-Token", std::string(kToken));
  EXPECT_TRUE(CheckFilesAccess(head, token, FileOp::kWrite, 0));
  head.headers.set("X-Access-Token", "wrong");
  Status st = CheckFilesAccess(head, token, FileOp::kWrite, 0);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kUnauthenticated);
}

TEST(CheckFilesAccessTest, MissingSignature) {
  Status st = CheckFilesAccess(Head({{"path", "a"}}), std::string(kToken), FileOp::kRead, 0);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kUnauthenticated);
  EXPECT_EQ(st.error().message(), "missing signature query parameter");
}

TEST(CheckFilesAccessTest, ValidSignature) {
  std::string sig = FileUrlSignature("hello.txt", FileOp::kRead, "user", kToken);
  auto head = Head({{"path", "hello.txt"}, {"username", "user"}, {"signature", sig}});
  EXPECT_TRUE(CheckFilesAccess(head, std::string(kToken), FileOp::kRead, 0));
  // The same signature does not grant a write, another path or another user.
  Status st = CheckFilesAccess(head, std::string(kToken), FileOp::kWrite, 0);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "invalid signature");
  head.query[0].second = "other.txt";
  EXPECT_FALSE(CheckFilesAccess(head, std::string(kToken), FileOp::kRead, 0));
}

TEST(CheckFilesAccessTest, SignatureWithoutUsernameOrPath) {
  std::string sig = FileUrlSignature("", FileOp::kWrite, "", kToken);
  EXPECT_TRUE(CheckFilesAccess(Head({{"signature", sig}}), std::string(kToken), FileOp::kWrite,
                               0));
}

TEST(CheckFilesAccessTest, ExpirationIsSignedAndChecked) {
  std::string sig = FileUrlSignature("a", FileOp::kRead, "", kToken, "1000");
  auto head = Head({{"path", "a"}, {"signature", sig}, {"signature_expiration", "1000"}});
  EXPECT_TRUE(CheckFilesAccess(head, std::string(kToken), FileOp::kRead, 999));
  EXPECT_TRUE(CheckFilesAccess(head, std::string(kToken), FileOp::kRead, 1000));
  Status st = CheckFilesAccess(head, std::string(kToken), FileOp::kRead, 1001);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kUnauthenticated);
  EXPECT_EQ(st.error().message(), "signature is already expired");
  // Moving the expiration invalidates the signature.
  head.query[2].second = "2000";
  st = CheckFilesAccess(head, std::string(kToken), FileOp::kRead, 1001);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "invalid signature");
}

TEST(CheckFilesAccessTest, NonNumericExpirationIsInvalidArgument) {
  auto head = Head({{"signature", "v1_x"}, {"signature_expiration", "soon"}});
  Status st = CheckFilesAccess(head, std::string(kToken), FileOp::kRead, 0);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace kiln::envd
