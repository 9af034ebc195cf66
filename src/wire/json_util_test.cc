#include "wire/json_util.h"

#include <gtest/gtest.h>

namespace kiln::wire {
namespace {

json Obj(std::string_view text) { return json::parse(text); }

template <typename T>
void ExpectWrongType(const Result<T>& r, std::string_view field) {
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_NE(r.error().message().find(std::string(field)), std::string::npos)
      << r.error().message();
}

TEST(JsonUtilTest, AbsentAndNullAreNullopt) {
  json j = Obj(R"({"a":null})");
  auto missing = GetString(j, "b");
  ASSERT_TRUE(missing);
  EXPECT_EQ(*missing, std::nullopt);
  auto null = GetString(j, "a");
  ASSERT_TRUE(null);
  EXPECT_EQ(*null, std::nullopt);
}

TEST(JsonUtilTest, NonObjectHasNoFields) {
  auto r = GetString(Obj("[1,2]"), "a");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, std::nullopt);
  EXPECT_EQ(FindField(Obj("\"x\""), "a"), nullptr);
}

TEST(JsonUtilTest, SnakeCaseIsAFallback) {
  auto snake = GetString(Obj(R"({"symlink_target":"/x"})"), "symlinkTarget", "symlink_target");
  ASSERT_TRUE(snake);
  EXPECT_EQ(*snake, "/x");
  auto both = GetString(Obj(R"({"symlink_target":"/snake","symlinkTarget":"/camel"})"),
                        "symlinkTarget", "symlink_target");
  EXPECT_EQ(*both, "/camel");
  auto null_camel = GetString(Obj(R"({"symlinkTarget":null,"symlink_target":"/s"})"),
                              "symlinkTarget", "symlink_target");
  EXPECT_EQ(*null_camel, "/s");
  // Without a snake name only the camel name counts.
  EXPECT_EQ(*GetString(Obj(R"({"symlink_target":"/x"})"), "symlinkTarget"), std::nullopt);
}

TEST(JsonUtilTest, StringRejectsOtherTypes) {
  ExpectWrongType(GetString(Obj(R"({"path":5})"), "path"), "path");
  ExpectWrongType(GetString(Obj(R"({"path":["a"]})"), "path"), "path");
  ExpectWrongType(GetString(Obj(R"({"path":true})"), "path"), "path");
}

TEST(JsonUtilTest, Bool) {
  EXPECT_EQ(*GetBool(Obj(R"({"stdin":false})"), "stdin"), false);
  EXPECT_EQ(*GetBool(Obj(R"({"include_entry":true})"), "includeEntry", "include_entry"), true);
  ExpectWrongType(GetBool(Obj(R"({"stdin":"true"})"), "stdin"), "stdin");
  ExpectWrongType(GetBool(Obj(R"({"stdin":1})"), "stdin"), "stdin");
}

TEST(JsonUtilTest, IntAcceptsNumbersAndDecimalStrings) {
  EXPECT_EQ(*GetInt(Obj(R"({"pid":42})"), "pid"), 42);
  EXPECT_EQ(*GetInt(Obj(R"({"size":"9007199254740993"})"), "size"), 9007199254740993);
  EXPECT_EQ(*GetInt(Obj(R"({"size":"-7"})"), "size"), -7);
  EXPECT_EQ(*GetInt(Obj(R"({"size":9223372036854775807})"), "size"), INT64_MAX);
  EXPECT_EQ(*GetInt(Obj(R"({"size":-9223372036854775808})"), "size"), INT64_MIN);
}

TEST(JsonUtilTest, IntRejectsBadValues) {
  for (const char* text : {R"({"n":1.5})", R"({"n":"1.5"})", R"({"n":""})", R"({"n":" 1"})",
                           R"({"n":"1 "})", R"({"n":"0x10"})", R"({"n":"abc"})",
                           R"({"n":"9223372036854775808"})", R"({"n":9223372036854775808})",
                           R"({"n":true})", R"({"n":{}})"}) {
    SCOPED_TRACE(text);
    ExpectWrongType(GetInt(Obj(text), "n"), "n");
  }
}

TEST(JsonUtilTest, Object) {
  auto r = GetObject(Obj(R"({"process":{"pid":1}})"), "process");
  ASSERT_TRUE(r);
  EXPECT_EQ((**r)["pid"], 1);
  ExpectWrongType(GetObject(Obj(R"({"process":[1]})"), "process"), "process");
  ExpectWrongType(GetObject(Obj(R"({"process":"x"})"), "process"), "process");
}

TEST(JsonUtilTest, StringList) {
  auto r = GetStringList(Obj(R"({"args":["-l","-c","echo hi"]})"), "args");
  ASSERT_TRUE(r);
  EXPECT_EQ(**r, (std::vector<std::string>{"-l", "-c", "echo hi"}));
  EXPECT_EQ(**GetStringList(Obj(R"({"args":[]})"), "args"), std::vector<std::string>{});
  ExpectWrongType(GetStringList(Obj(R"({"args":["a",1]})"), "args"), "args");
  ExpectWrongType(GetStringList(Obj(R"({"args":"a"})"), "args"), "args");
  ExpectWrongType(GetStringList(Obj(R"({"args":[null]})"), "args"), "args");
}

TEST(JsonUtilTest, StringMap) {
  auto r = GetStringMap(Obj(R"({"env_vars":{"A":"1","B":""}})"), "envVars", "env_vars");
  ASSERT_TRUE(r);
  EXPECT_EQ(**r, (std::map<std::string, std::string>{{"A", "1"}, {"B", ""}}));
  ExpectWrongType(GetStringMap(Obj(R"({"envs":{"A":1}})"), "envs"), "envs");
  ExpectWrongType(GetStringMap(Obj(R"({"envs":["A"]})"), "envs"), "envs");
}

TEST(JsonUtilTest, BytesAcceptsStandardUrlSafeAndUnpadded) {
  EXPECT_EQ(*GetBytes(Obj(R"({"stdin":"aGk="})"), "stdin"), "hi");
  EXPECT_EQ(*GetBytes(Obj(R"({"stdin":"aGk"})"), "stdin"), "hi");
  EXPECT_EQ(*GetBytes(Obj(R"({"pty":"-_-_"})"), "pty"), "\xfb\xff\xbf");
  EXPECT_EQ(*GetBytes(Obj(R"({"stdin":""})"), "stdin"), "");
  EXPECT_EQ(*GetBytes(Obj("{}"), "stdin"), std::nullopt);
}

TEST(JsonUtilTest, BytesRejectsMalformed) {
  ExpectWrongType(GetBytes(Obj(R"({"stdin":"a b"})"), "stdin"), "stdin");
  ExpectWrongType(GetBytes(Obj(R"({"stdin":"a"})"), "stdin"), "stdin");
  ExpectWrongType(GetBytes(Obj(R"({"stdin":5})"), "stdin"), "stdin");
}

}  // namespace
}  // namespace kiln::wire
