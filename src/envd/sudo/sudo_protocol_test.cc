#include "envd/sudo/sudo_protocol.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

namespace kiln::envd::sudo {
namespace {

SudoRequest FullRequest() {
  SudoRequest r;
  r.argv = {"sh", "-c", "echo $SUDO_USER"};
  r.env = {"TERM=xterm", "LANG=C.UTF-8"};
  r.assignments = {"FOO=bar"};
  r.preserve_names = {"KEEP"};
  r.cwd = "/home/user";
  r.invoker_shell = "/bin/bash";
  r.user = "nobody";
  r.group = "#27";
  r.set_home = true;
  r.preserve_env = true;
  r.stdio = {true, false, true};
  return r;
}

TEST(SudoProtocolTest, RequestRoundTrip) {
  SudoRequest in = FullRequest();
  auto out = ParseRequest(RequestToJson(in));
  ASSERT_TRUE(out) << out.error().message();
  EXPECT_EQ(out->argv, in.argv);
  EXPECT_EQ(out->env, in.env);
  EXPECT_EQ(out->assignments, in.assignments);
  EXPECT_EQ(out->preserve_names, in.preserve_names);
  EXPECT_EQ(out->cwd, in.cwd);
  EXPECT_EQ(out->invoker_shell, in.invoker_shell);
  EXPECT_EQ(out->user, in.user);
  EXPECT_EQ(out->group, in.group);
  EXPECT_TRUE(out->set_home);
  EXPECT_TRUE(out->preserve_env);
  EXPECT_FALSE(out->login);
  EXPECT_EQ(out->stdio, in.stdio);
  EXPECT_EQ(out->attached_fds(), 2);
}

TEST(SudoProtocolTest, NonUtf8BytesSurviveTheTrip) {
  SudoRequest in;
  in.argv = {"touch", std::string("caf\xe9.txt"), std::string("\xff\xfe")};
  in.cwd = std::string("/tmp/\xc3\x28");
  std::string json = RequestToJson(in);
  EXPECT_NE(json.find("b64"), std::string::npos);
  auto out = ParseRequest(json);
  ASSERT_TRUE(out) << out.error().message();
  EXPECT_EQ(out->argv, in.argv);
  EXPECT_EQ(out->cwd, in.cwd);
}

TEST(SudoProtocolTest, ValidUtf8StaysPlainText) {
  SudoRequest in;
  in.argv = {"echo", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"};
  std::string json = RequestToJson(in);
  EXPECT_EQ(json.find("b64"), std::string::npos);
  EXPECT_EQ(ParseRequest(json)->argv, in.argv);
}

TEST(SudoProtocolTest, MalformedRequestsAreErrorsNotCrashes) {
  const char* bad[] = {
      "",
      "not json",
      "[1,2]",
      "{\"argv\": \"id\"}",
      "{\"argv\": [1]}",
      "{\"argv\": [\"a\\u0000b\"]}",
      "{\"argv\": [{\"b64\": \"!!!\"}]}",
      "{\"argv\": [{\"b64\": \"YQ==\", \"x\": 1}]}",
      "{\"argv\": []}",
      "{\"argv\": [\"\"]}",
      "{\"argv\": [\"id\"], \"env\": [\"NOEQUALS\"]}",
      "{\"argv\": [\"id\"], \"env\": [\"=x\"]}",
      "{\"argv\": [\"id\"], \"assignments\": [\"x\"]}",
      "{\"argv\": [\"id\"], \"login\": \"yes\"}",
      "{\"argv\": [\"id\"], \"login\": true, \"shell\": true}",
      "{\"argv\": [\"id\"], \"user\": \"\"}",
      "{\"argv\": [\"id\"], \"user\": 0}",
      "{\"argv\": [\"id\"], \"stdio\": [0, 0]}",
      "{\"argv\": [\"id\"], \"stdio\": [3]}",
      "{\"argv\": [\"id\"], \"stdio\": [2, 1]}",
      "{\"argv\": [\"id\"], \"stdio\": [0, 1, 2, 2]}",
      "{\"argv\": [\"id\"], \"stdio\": [\"0\"]}",
      "{\"argv\": [\"id\"], \"cwd\": 5}",
      "{\"argv\": [\"id\"]",
  };
  for (const char* text : bad) {
    auto r = ParseRequest(text);
    EXPECT_FALSE(r) << text;
    if (!r) {
      EXPECT_EQ(r.error().code(), Errc::kInvalidArgument) << text;
    }
  }
}

TEST(SudoProtocolTest, MinimalRequestDefaults) {
  auto r = ParseRequest("{\"argv\": [\"id\"]}");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->attached_fds(), 3);
  EXPECT_TRUE(r->env.empty());
  EXPECT_FALSE(r->user);
  EXPECT_TRUE(ParseRequest("{\"login\": true}"));
  EXPECT_TRUE(ParseRequest("{\"list\": true}"));
  EXPECT_TRUE(ParseRequest("{\"argv\": [\"id\"], \"stdio\": []}"));
}

TEST(SudoProtocolTest, ReplyRoundTripAndExitStatus) {
  SudoReply r = ErrorReply("unknown user bob");
  EXPECT_EQ(r.err, "sudo: unknown user bob\n");
  auto back = ParseReply(ReplyToJson(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->exit_code, 1);
  EXPECT_EQ(back->err, r.err);
  EXPECT_EQ(back->ClientExitStatus(), 1);

  SudoReply killed;
  killed.signal = SIGINT;
  back = ParseReply(ReplyToJson(killed));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->ClientExitStatus(), 130);
  EXPECT_FALSE(ParseReply("{\"exit\": 256}"));
  EXPECT_FALSE(ParseReply("{\"signal\": -1}"));
  EXPECT_FALSE(ParseReply("{\"exit\": 1.5}"));
}

TEST(SudoProtocolTest, ReplyForWaitStatus) {
  EXPECT_EQ(ReplyForWaitStatus(7 << 8).ClientExitStatus(), 7);
  EXPECT_EQ(ReplyForWaitStatus(SIGKILL).signal, SIGKILL);
  EXPECT_EQ(ReplyForWaitStatus(SIGKILL).ClientExitStatus(), 137);
}

TEST(SudoProtocolTest, SignalMessages) {
  EXPECT_EQ(ParseSignal(SignalToJson(SIGINT)).value_or(-1), SIGINT);
  EXPECT_FALSE(ParseSignal("{}"));
  EXPECT_FALSE(ParseSignal("{\"signal\": 0}"));
  EXPECT_FALSE(ParseSignal("{\"signal\": 65}"));
  EXPECT_FALSE(ParseSignal("{\"signal\": \"INT\"}"));
}

TEST(SudoProtocolTest, FramesSplitAcrossReads) {
  std::string stream = EncodeFrame("hello") + EncodeFrame("") + EncodeFrame("world");
  FrameReader reader(100);
  std::vector<std::string> got;
  for (char c : stream) {
    reader.Append(std::string_view(&c, 1));
    for (;;) {
      auto f = reader.Next();
      ASSERT_TRUE(f);
      if (!*f) break;
      got.push_back(**f);
    }
  }
  EXPECT_EQ(got, (std::vector<std::string>{"hello", "", "world"}));
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(SudoProtocolTest, OversizedFrameIsRefusedFromItsHeader) {
  FrameReader reader(kMaxRequestBytes);
  std::string header = EncodeFrame(std::string(10, 'x')).substr(0, 4);
  header[1] = 0x10;  // 1 MiB + 10
  reader.Append(header);
  auto f = reader.Next();
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), Errc::kResourceExhausted);
}

}  // namespace
}  // namespace kiln::envd::sudo
