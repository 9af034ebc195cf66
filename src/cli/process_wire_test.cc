#include "cli/process_wire.h"

#include <gtest/gtest.h>

#include "base/encoding.h"
#include "cli/envelope.h"

namespace kiln::cli {
namespace {

using nlohmann::json;

std::string Frame(uint8_t flags, std::string_view payload) {
  return http::connect::EncodeEnvelope(flags, payload);
}

TEST(EnvelopeDecoderTest, FramesSplitAnywhere) {
  std::string stream = Frame(0, R"({"a":1})") + Frame(0, "") + Frame(2, "{}");
  for (size_t step = 1; step <= stream.size(); ++step) {
    EnvelopeDecoder d;
    std::vector<http::connect::Envelope> got;
    for (size_t i = 0; i < stream.size(); i += step) {
      d.Feed(std::string_view(stream).substr(i, step));
      for (;;) {
        auto f = d.Next();
        ASSERT_TRUE(f);
        if (!*f) break;
        got.push_back(**f);
      }
    }
    ASSERT_EQ(got.size(), 3u) << "step " << step;
    EXPECT_EQ(got[0].payload, R"({"a":1})");
    EXPECT_EQ(got[1].payload, "");
    EXPECT_EQ(got[2].flags, 2);
    EXPECT_EQ(d.buffered(), 0u);
  }
}

TEST(EnvelopeDecoderTest, RejectsCompressedAndHugeFrames) {
  EnvelopeDecoder compressed;
  compressed.Feed(Frame(1, "x"));
  EXPECT_FALSE(compressed.Next());
  EXPECT_FALSE(compressed.Next());  // stays failed
  EnvelopeDecoder huge;
  huge.Feed(std::string("\x00\x7f\xff\xff\xff", 5));
  EXPECT_FALSE(huge.Next());
}

TEST(ProcessWireTest, ExecStartMatchesTheSdk) {
  ExecSpec spec;
  spec.command = "echo hi";
  spec.envs = {{"A", "1"}};
  spec.cwd = "/tmp";
  spec.stdin = false;
  EXPECT_EQ(ExecStartRequest(spec),
            json::parse(R"({"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"],)"
                        R"("envs":{"A":"1"},"cwd":"/tmp"},"stdin":false})"));
  ExecSpec bare;
  bare.command = "true";
  bare.stdin = true;
  EXPECT_EQ(ExecStartRequest(bare),
            json::parse(R"({"process":{"cmd":"/bin/bash","args":["-l","-c","true"],)"
                        R"("envs":{}},"stdin":true})"));
}

TEST(ProcessWireTest, PtyRequests) {
  PtySpec spec;
  spec.cols = 120;
  spec.rows = 40;
  spec.envs["TERM"] = "screen";
  EXPECT_EQ(PtyStartRequest(spec),
            json::parse(R"({"process":{"cmd":"/bin/bash","args":["-i","-l"],"envs":)"
                        R"({"TERM":"screen","LANG":"C.UTF-8","LC_ALL":"C.UTF-8"}},)"
                        R"("pty":{"size":{"cols":120,"rows":40}}})"));
  EXPECT_EQ(SendInputRequest(7, "ls\r", true),
            json::parse(R"({"process":{"pid":7},"input":{"pty":"bHMN"}})"));
  EXPECT_EQ(SendInputRequest(7, "x", false),
            json::parse(R"({"process":{"pid":7},"input":{"stdin":"eA=="}})"));
  EXPECT_EQ(ResizeRequest(7, 100, 30),
            json::parse(R"({"process":{"pid":7},"pty":{"size":{"cols":100,"rows":30}}})"));
  EXPECT_EQ(SignalRequest(7, true),
            json::parse(R"({"process":{"pid":7},"signal":"SIGNAL_SIGKILL"})"));
  EXPECT_EQ(SelectorRequest(7), json::parse(R"({"process":{"pid":7}})"));
}

TEST(ProcessWireTest, CommandScriptQuotesSeveralWords) {
  EXPECT_EQ(CommandScript({"ls | wc -l"}), "ls | wc -l");
  EXPECT_EQ(CommandScript({"ls", "-la", "my file", "it's", "$HOME", ""}),
            "ls -la 'my file' 'it'\\''s' '$HOME' ''");
  EXPECT_EQ(ShellQuote("a/b.c=d:e@f%g+h,i-j_k"), "a/b.c=d:e@f%g+h,i-j_k");
}

TEST(ProcessWireTest, ParsesEvents) {
  auto start = ParseProcessEvent(R"({"event":{"start":{"pid":42}}})");
  ASSERT_TRUE(start);
  EXPECT_EQ(start->kind, ProcessEvent::Kind::kStart);
  EXPECT_EQ(start->pid, 42u);
  auto out = ParseProcessEvent(R"({"event":{"data":{"stdout":")" + Base64Encode("hi\n") + R"("}}})");
  ASSERT_TRUE(out);
  EXPECT_EQ(out->kind, ProcessEvent::Kind::kStdout);
  EXPECT_EQ(out->data, "hi\n");
  auto err = ParseProcessEvent(R"({"event":{"data":{"stderr":"eA"}}})");  // unpadded
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind, ProcessEvent::Kind::kStderr);
  EXPECT_EQ(err->data, "x");
  EXPECT_EQ(ParseProcessEvent(R"({"event":{"keepalive":{}}})")->kind,
            ProcessEvent::Kind::kKeepalive);
  EXPECT_EQ(ParseProcessEvent(R"({"event":{"other":{}}})")->kind, ProcessEvent::Kind::kUnknown);
  auto end = ParseProcessEvent(
      R"({"event":{"end":{"exitCode":3,"exited":true,"status":"exit status 3","error":"exit status 3"}}})");
  ASSERT_TRUE(end);
  EXPECT_EQ(end->kind, ProcessEvent::Kind::kEnd);
  EXPECT_EQ(end->end.exit_code, 3);
  EXPECT_TRUE(end->end.exited);
  EXPECT_EQ(end->end.status, "exit status 3");
  // Go omits zero values: a bare end is exit 0.
  EXPECT_EQ(ParseProcessEvent(R"({"event":{"end":{"exited":true}}})")->end.exit_code, 0);
  EXPECT_FALSE(ParseProcessEvent("not json"));
  EXPECT_FALSE(ParseProcessEvent(R"({"event":{"data":{"stdout":"%%%"}}})"));
  EXPECT_FALSE(ParseProcessEvent(R"({"event":{"start":{}}})"));
}

TEST(ProcessWireTest, EndStream) {
  EXPECT_TRUE(ParseEndStream("{}"));
  EXPECT_TRUE(ParseEndStream(""));
  auto deadline =
      ParseEndStream(R"({"error":{"code":"deadline_exceeded","message":"took too long"}})");
  ASSERT_FALSE(deadline);
  EXPECT_EQ(deadline.error().code(), Errc::kTimeout);
  EXPECT_EQ(deadline.error().message(), "deadline_exceeded: took too long");
  EXPECT_EQ(ExitCodeForError(deadline.error()), 124);
  auto nf = ParseEndStream(R"({"error":{"code":"not_found"}})");
  ASSERT_FALSE(nf);
  EXPECT_EQ(nf.error().message(), "not_found");
  EXPECT_EQ(ExitCodeForError(nf.error()), 1);
}

TEST(ExitCodeTest, MapsExitStatusAndSignals) {
  EXPECT_EQ(ExitCodeFor({0, true, "exit status 0", ""}), 0);
  EXPECT_EQ(ExitCodeFor({3, true, "exit status 3", ""}), 3);
  EXPECT_EQ(ExitCodeFor({256, true, "", ""}), 1);  // never a false success
  EXPECT_EQ(ExitCodeFor({-1, false, "signal: killed", ""}), 137);
  EXPECT_EQ(ExitCodeFor({-1, false, "signal: terminated", ""}), 143);
  EXPECT_EQ(ExitCodeFor({-1, false, "signal: segmentation fault (core dumped)", ""}), 139);
  EXPECT_EQ(ExitCodeFor({-1, false, "signal: Interrupt", ""}), 130);
  EXPECT_EQ(ExitCodeFor({-1, false, "signal 42", ""}), 1);
  EXPECT_EQ(ExitCodeFor({-1, false, "signal: signal 42", ""}), 170);
  EXPECT_EQ(ExitCodeFor({-1, false, "", ""}), 1);
  EXPECT_EQ(ExitCodeFor({-1, false, "signal: who knows", ""}), 1);
  EXPECT_EQ(SignalFromName("broken pipe"), 13);
  EXPECT_FALSE(SignalFromName("signal 0"));
}

}  // namespace
}  // namespace kiln::cli
