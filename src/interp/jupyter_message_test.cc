#include "interp/jupyter_message.h"

#include <gtest/gtest.h>

#include <random>
#include <regex>
#include <set>

namespace kiln::interp {
namespace {

using nlohmann::json;

std::vector<std::string> SignedFrames(const MessageSigner& signer, std::string header,
                                      std::string parent, std::string metadata,
                                      std::string content) {
  std::string sig = signer.Sign(header, parent, metadata, content);
  return {"id1", std::string(kMessageDelimiter), sig, header, parent, metadata, content};
}

TEST(MessageSignerTest, MatchesRfc4231Hmac) {
  // RFC 4231 test case 2, the data split across the four frames.
  MessageSigner signer("Jefe");
  EXPECT_EQ(signer.Sign("what do ya", " want ", "for nothing", "?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(MessageSignerTest, EmptyKeySignsNothingAndAcceptsAnything) {
  MessageSigner signer("");
  EXPECT_EQ(signer.Sign("{}", "{}", "{}", "{}"), "");
  EXPECT_TRUE(signer.Verify("whatever", "{}", "{}", "{}", "{}"));
}

TEST(MessageSignerTest, VerifyRejectsWrongSignatures) {
  MessageSigner signer("key");
  std::string sig = signer.Sign("a", "b", "c", "d");
  EXPECT_TRUE(signer.Verify(sig, "a", "b", "c", "d"));
  EXPECT_FALSE(signer.Verify(sig, "a", "b", "c", "e"));
  EXPECT_FALSE(signer.Verify(sig.substr(1), "a", "b", "c", "d"));
  EXPECT_FALSE(signer.Verify("", "a", "b", "c", "d"));
  std::string upper = sig;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  EXPECT_FALSE(signer.Verify(upper, "a", "b", "c", "d"));
}

TEST(JupyterMessageTest, SerializeParseRoundTrip) {
  MessageSigner signer("secret");
  Message m = MakeMessage("execute_request", "sess", json{{"code", "print('é')"}});
  m.identities = {"peer"};
  m.parent_header = json{{"msg_id", "p1"}};
  m.buffers = {std::string("\0\xff", 2)};
  std::vector<std::string> frames = SerializeMessage(m, signer);
  ASSERT_EQ(frames.size(), 8u);
  EXPECT_EQ(frames[1], kMessageDelimiter);
  Result<Message> back = ParseMessage(frames, signer);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->identities, m.identities);
  EXPECT_EQ(back->header, m.header);
  EXPECT_EQ(back->parent_header, m.parent_header);
  EXPECT_EQ(back->content, m.content);
  EXPECT_EQ(back->buffers, m.buffers);
  EXPECT_EQ(back->msg_type(), "execute_request");
  EXPECT_EQ(back->parent_msg_id(), "p1");
  EXPECT_EQ(back->header["version"], "5.3");
  EXPECT_EQ(back->header["session"], "sess");
}

TEST(JupyterMessageTest, BadSignatureIsUnauthenticated) {
  MessageSigner signer("secret");
  std::vector<std::string> frames =
      SerializeMessage(MakeMessage("status", "s", json{{"execution_state", "idle"}}), signer);
  frames.back()[frames.back().size() - 2] ^= 1;
  Result<Message> m = ParseMessage(frames, signer);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), Errc::kUnauthenticated);
  // Signed with another key.
  frames = SerializeMessage(MakeMessage("status", "s", json::object()), MessageSigner("other"));
  m = ParseMessage(frames, signer);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), Errc::kUnauthenticated);
}

TEST(JupyterMessageTest, MissingDelimiterOrTruncatedFramesAreInvalid) {
  MessageSigner signer("k");
  std::vector<std::string> frames = SerializeMessage(MakeMessage("x", "s", json::object()), signer);
  for (size_t keep = 0; keep < frames.size(); ++keep) {
    std::vector<std::string> cut(frames.begin(), frames.begin() + static_cast<ptrdiff_t>(keep));
    Result<Message> m = ParseMessage(cut, signer);
    ASSERT_FALSE(m) << keep;
    EXPECT_EQ(m.error().code(), Errc::kInvalidArgument) << keep;
  }
  EXPECT_FALSE(ParseMessage({"a", "b", "c", "d", "e", "f", "g"}, signer));
}

TEST(JupyterMessageTest, GarbageOrNonObjectJsonIsInvalid) {
  MessageSigner signer("k");
  for (auto [header, content] : std::vector<std::pair<std::string, std::string>>{
           {"{\"msg_type\":", "{}"},
           {"{}", "[1,2]"},
           {"{}", "\"str\""},
           {"{}", "{\"a\":NaN}"},
           {"", "{}"},
           {"{}", std::string("{\"a\":\"\x01\"}")}}) {
    Result<Message> m = ParseMessage(SignedFrames(signer, header, "{}", "{}", content), signer);
    ASSERT_FALSE(m) << header << " " << content;
    EXPECT_EQ(m.error().code(), Errc::kInvalidArgument);
  }
}

TEST(JupyterMessageTest, InvalidUtf8IsReplaced) {
  MessageSigner signer("k");
  std::string content = "{\"text\":\"a\xff" "b\xe2\x82" "c\xc3\xa9\"}";
  Result<Message> m = ParseMessage(SignedFrames(signer, "{\"msg_type\":\"stream\"}", "{}", "{}",
                                                content),
                                   signer);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->content["text"], "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xc3\xa9");
  EXPECT_EQ(DumpJson(m->content), "{\"text\":\"a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xc3\xa9\"}");
}

TEST(JupyterMessageTest, LoneSurrogateEscapesAreReplacedPairsKept) {
  Result<json> j = ParseJsonTolerant(
      R"({"a":"x\ud800y","b":"\udc80","c":"\ud83d\ude00","d":"\\ud800","e":"\ud800\u0041"})");
  ASSERT_TRUE(j) << j.error().message();
  EXPECT_EQ((*j)["a"], "x\xEF\xBF\xBDy");
  EXPECT_EQ((*j)["b"], "\xEF\xBF\xBD");
  EXPECT_EQ((*j)["c"], "\xF0\x9F\x98\x80");
  EXPECT_EQ((*j)["d"], "\\ud800");  // an escaped backslash, not an escape
  EXPECT_EQ((*j)["e"], "\xEF\xBF\xBD" "A");
}

TEST(JupyterMessageTest, DeepNestingIsRejected) {
  std::string deep(kMaxJsonDepth + 1, '[');
  deep += std::string(kMaxJsonDepth + 1, ']');
  EXPECT_FALSE(ParseJsonTolerant(deep));
  std::string ok(kMaxJsonDepth, '[');
  ok += std::string(kMaxJsonDepth, ']');
  EXPECT_TRUE(ParseJsonTolerant(ok));
  // Brackets inside strings do not count.
  EXPECT_TRUE(ParseJsonTolerant("{\"a\":\"" + std::string(10000, '[') + "\"}"));
}

TEST(JupyterMessageTest, RandomFramesNeverCrash) {
  std::mt19937 rng(42);
  MessageSigner signer("");
  const std::string pieces[] = {"{", "}", "[", "]", "\"", "\\", "\\u", "d800", "\\udc00", ":",
                                ",", "1", "null", "\xff", "\xc3", "\xa9", "a", "\xed\xa0\x80"};
  for (int i = 0; i < 5000; ++i) {
    std::vector<std::string> frames = {std::string(kMessageDelimiter), ""};
    for (int f = 0; f < 4; ++f) {
      std::string s = rng() % 3 ? "{" : "";
      int n = static_cast<int>(rng() % 12);
      for (int k = 0; k < n; ++k) s += pieces[rng() % std::size(pieces)];
      frames.push_back(s);
    }
    Result<Message> m = ParseMessage(frames, signer);
    if (m) {
      // Whatever parsed must dump again.
      EXPECT_FALSE(DumpJson(m->content).empty());
    }
  }
}

TEST(JupyterMessageTest, MessageIdsAreUuid4) {
  std::regex uuid("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string id = NewMessageId();
    EXPECT_TRUE(std::regex_match(id, uuid)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(JupyterMessageTest, TimestampIsIso8601WithMicroseconds) {
  std::regex iso("^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$");
  EXPECT_TRUE(std::regex_match(IsoTimestampNow(), iso)) << IsoTimestampNow();
}

}  // namespace
}  // namespace kiln::interp
