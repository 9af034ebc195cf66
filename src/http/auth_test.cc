#include "http/auth.h"

#include <gtest/gtest.h>

#include "base/encoding.h"

namespace kiln::http {
namespace {

std::string Basic(std::string_view user_pass) { return "Basic " + Base64Encode(user_pass); }

TEST(BasicAuthTest, EmptyHeaderMeansNoUser) {
  auto r = ParseBasicAuthUser("");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, std::nullopt);
}

TEST(BasicAuthTest, ReturnsUserOfUserColon) {
  // What the SDKs send: "<user>:" with an empty password.
  auto r = ParseBasicAuthUser(Basic("user:"));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, "user");
}

TEST(BasicAuthTest, IgnoresPassword) {
  auto r = ParseBasicAuthUser(Basic("root:some:secret"));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "root");
}

TEST(BasicAuthTest, SchemeIsCaseInsensitiveAndSpacesAreTrimmed) {
  auto r = ParseBasicAuthUser("bAsIc   " + Base64Encode("user:") + "  ");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "user");
}

TEST(BasicAuthTest, AcceptsUnpaddedBase64) {
  auto r = ParseBasicAuthUser("Basic " + Base64EncodeNoPad("user:"));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "user");
}

TEST(BasicAuthTest, WithoutColonTheWholeValueIsTheUser) {
  auto r = ParseBasicAuthUser(Basic("user"));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "user");
}

TEST(BasicAuthTest, RejectsBadBase64) {
  auto r = ParseBasicAuthUser("Basic !!not-base64!!");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kUnauthenticated);
}

TEST(BasicAuthTest, RejectsEmptyUser) {
  for (std::string h : {Basic(":password"), Basic(":"), Basic(""), std::string("Basic ")}) {
    auto r = ParseBasicAuthUser(h);
    ASSERT_FALSE(r) << h;
    EXPECT_EQ(r.error().code(), Errc::kUnauthenticated) << h;
  }
}

TEST(BasicAuthTest, RejectsOtherSchemes) {
  for (std::string h : {"Bearer abc", "Digest username=\"u\"", "Basi", "BasicdXNlcjo="}) {
    auto r = ParseBasicAuthUser(h);
    ASSERT_FALSE(r) << h;
    EXPECT_EQ(r.error().code(), Errc::kUnauthenticated) << h;
  }
}

}  // namespace
}  // namespace kiln::http
