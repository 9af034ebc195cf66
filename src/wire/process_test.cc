#include "wire/process.h"

#include <signal.h>

#include <gtest/gtest.h>

namespace kiln::wire {
namespace {

using nlohmann::json;

json J(std::string_view text) { return json::parse(text); }

TEST(ProcessWireTest, ParsesStartRequestAsTheSdkSendsIt) {
  auto req = ParseStartRequest(J(R"({"process":{"cmd":"/bin/bash","args":["-l","-c","ls"],
      "envs":{"A":"1"},"cwd":"/tmp"},"stdin":false,"tag":"t1"})"));
  ASSERT_TRUE(req) << req.error().message();
  EXPECT_EQ(req->process.cmd, "/bin/bash");
  EXPECT_EQ(req->process.args, (std::vector<std::string>{"-l", "-c", "ls"}));
  EXPECT_EQ(req->process.envs.at("A"), "1");
  EXPECT_EQ(req->process.cwd, "/tmp");
  EXPECT_EQ(req->stdin, false);
  EXPECT_EQ(req->tag, "t1");
  EXPECT_FALSE(req->pty);
}

TEST(ProcessWireTest, StartRequestDefaults) {
  auto req = ParseStartRequest(J(R"({"process":{"cmd":"ls"}})"));
  ASSERT_TRUE(req);
  EXPECT_TRUE(req->process.args.empty());
  EXPECT_FALSE(req->process.cwd);
  EXPECT_FALSE(req->stdin);
  EXPECT_FALSE(req->tag);
}

TEST(ProcessWireTest, ParsesPtySizeWithDefaults) {
  auto req = ParseStartRequest(J(R"({"process":{"cmd":"sh"},"pty":{"size":{"cols":120,"rows":"40"}}})"));
  ASSERT_TRUE(req);
  ASSERT_TRUE(req->pty);
  EXPECT_EQ(req->pty->cols, 120);
  EXPECT_EQ(req->pty->rows, 40);
  auto bare = ParseStartRequest(J(R"({"process":{"cmd":"sh"},"pty":{}})"));
  ASSERT_TRUE(bare && bare->pty);
  EXPECT_EQ(bare->pty->cols, 80);
  EXPECT_EQ(bare->pty->rows, 24);
}

TEST(ProcessWireTest, RejectsBadStartRequests) {
  for (const char* bad : {
           R"({})",
           R"({"process":null})",
           R"({"process":"ls"})",
           R"({"process":{}})",
           R"({"process":{"cmd":""}})",
           R"({"process":{"cmd":7}})",
           R"({"process":{"cmd":"ls","args":"-l"}})",
           R"({"process":{"cmd":"ls","args":[1]}})",
           R"({"process":{"cmd":"ls","envs":{"A":1}}})",
           R"({"process":{"cmd":"ls","envs":["A"]}})",
           R"({"process":{"cmd":"ls","cwd":false}})",
           R"({"process":{"cmd":"ls"},"stdin":"yes"})",
           R"({"process":{"cmd":"ls"},"tag":1})",
           R"({"process":{"cmd":"ls"},"pty":{"size":{"cols":70000}}})",
           R"({"process":{"cmd":"ls"},"pty":{"size":{"rows":-1}}})",
           R"({"process":{"cmd":"ls"},"pty":{"size":{"rows":1.5}}})",
           R"({"process":{"cmd":"ls"},"pty":{"size":"80x24"}})",
       }) {
    auto req = ParseStartRequest(J(bad));
    ASSERT_FALSE(req) << bad;
    EXPECT_EQ(req.error().code(), Errc::kInvalidArgument) << bad;
  }
}

TEST(ProcessWireTest, ParsesSelectors) {
  auto pid = ParseSelectorField(J(R"({"process":{"pid":42}})"));
  ASSERT_TRUE(pid);
  EXPECT_EQ(pid->pid, 42u);
  EXPECT_FALSE(pid->tag);
  auto tag = ParseSelectorField(J(R"({"process":{"tag":"web"}})"));
  ASSERT_TRUE(tag);
  EXPECT_EQ(tag->tag, "web");
  EXPECT_FALSE(tag->pid);
  EXPECT_EQ(ParseSelectorField(J(R"({"process":{"pid":"7"}})"))->pid, 7u);
}

TEST(ProcessWireTest, RejectsBadSelectors) {
  for (const char* bad : {
           R"({})",
           R"({"process":{}})",
           R"({"process":{"pid":1,"tag":"x"}})",
           R"({"process":{"pid":-1}})",
           R"({"process":{"pid":4294967296}})",
           R"({"process":{"pid":"x"}})",
           R"({"process":{"pid":true}})",
           R"({"process":[1]})",
       }) {
    auto sel = ParseSelectorField(J(bad));
    ASSERT_FALSE(sel) << bad;
    EXPECT_EQ(sel.error().code(), Errc::kInvalidArgument) << bad;
  }
}

TEST(ProcessWireTest, ParsesInputAsBase64) {
  auto in = ParseSendInputRequest(J(R"({"process":{"pid":1},"input":{"stdin":"aGk="}})"));
  ASSERT_TRUE(in);
  EXPECT_EQ(in->input.kind, InputKind::kStdin);
  EXPECT_EQ(in->input.data, "hi");
  auto pty = ParseSendInputRequest(J(R"({"process":{"pid":1},"input":{"pty":"aGk"}})"));
  ASSERT_TRUE(pty);
  EXPECT_EQ(pty->input.kind, InputKind::kPty);
  EXPECT_EQ(pty->input.data, "hi");
  auto empty = ParseSendInputRequest(J(R"({"process":{"pid":1},"input":{"stdin":""}})"));
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->input.data, "");
}

TEST(ProcessWireTest, RejectsBadInput) {
  for (const char* bad : {
           R"({"process":{"pid":1}})",
           R"({"process":{"pid":1},"input":{}})",
           R"({"process":{"pid":1},"input":{"stdin":"!!!"}})",
           R"({"process":{"pid":1},"input":{"stdin":"aGk=","pty":"aGk="}})",
           R"({"process":{"pid":1},"input":"aGk="})",
           R"({"input":{"stdin":"aGk="}})",
       }) {
    auto in = ParseSendInputRequest(J(bad));
    ASSERT_FALSE(in) << bad;
    EXPECT_EQ(in.error().code(), Errc::kInvalidArgument) << bad;
  }
}

TEST(ProcessWireTest, ParsesSignalNamesAndNumbers) {
  EXPECT_EQ(ParseSendSignalRequest(J(R"({"process":{"pid":1},"signal":"SIGNAL_SIGKILL"})"))->signal,
            SIGKILL);
  EXPECT_EQ(ParseSendSignalRequest(J(R"({"process":{"pid":1},"signal":"SIGNAL_SIGTERM"})"))->signal,
            SIGTERM);
  EXPECT_EQ(ParseSendSignalRequest(J(R"({"process":{"pid":1},"signal":9})"))->signal, SIGKILL);
  EXPECT_EQ(ParseSendSignalRequest(J(R"({"process":{"pid":1},"signal":15})"))->signal, SIGTERM);
  for (const char* bad : {
           R"({"process":{"pid":1}})",
           R"({"process":{"pid":1},"signal":"SIGNAL_UNSPECIFIED"})",
           R"({"process":{"pid":1},"signal":0})",
           R"({"process":{"pid":1},"signal":2})",
           R"({"process":{"pid":1},"signal":"SIGKILL"})",
           R"({"process":{"pid":1},"signal":9.5})",
       }) {
    auto sig = ParseSendSignalRequest(J(bad));
    ASSERT_FALSE(sig) << bad;
    EXPECT_EQ(sig.error().code(), Errc::kInvalidArgument) << bad;
  }
}

TEST(ProcessWireTest, ParsesUpdate) {
  auto up = ParseUpdateRequest(J(R"({"process":{"pid":3},"pty":{"size":{"cols":10,"rows":5}}})"));
  ASSERT_TRUE(up && up->pty);
  EXPECT_EQ(up->pty->cols, 10);
  EXPECT_EQ(up->pty->rows, 5);
  auto none = ParseUpdateRequest(J(R"({"process":{"pid":3}})"));
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->pty);
  EXPECT_FALSE(ParseUpdateRequest(J(R"({"process":{"pid":3},"pty":{"size":{"cols":-5}}})")));
}

TEST(ProcessWireTest, AcceptsSnakeCaseNames) {
  // Only single-word fields exist in these messages; snake_case equals camelCase here, and
  // unknown fields are ignored.
  auto req = ParseStartRequest(J(R"({"process":{"cmd":"ls","extra_field":1},"unknown":{}})"));
  EXPECT_TRUE(req);
}

TEST(ProcessWireTest, BuildsEventsInProto3Json) {
  EXPECT_EQ(StartEventJson(12).dump(), R"({"event":{"start":{"pid":12}}})");
  EXPECT_EQ(DataEventJson(OutputKind::kStdout, "hi").dump(),
            R"({"event":{"data":{"stdout":"aGk="}}})");
  EXPECT_EQ(DataEventJson(OutputKind::kStderr, "\xff").dump(),
            R"({"event":{"data":{"stderr":"/w=="}}})");
  EXPECT_EQ(DataEventJson(OutputKind::kPty, "").dump(), R"({"event":{"data":{"pty":""}}})");
  EXPECT_EQ(KeepaliveEventJson().dump(), R"({"event":{"keepalive":{}}})");
  EndEvent ok{0, true, "exit status 0", std::nullopt};
  EXPECT_EQ(EndEventJson(ok).dump(),
            R"({"event":{"end":{"exitCode":0,"exited":true,"status":"exit status 0"}}})");
  EndEvent killed{-1, false, "signal: killed", "signal: killed"};
  EXPECT_EQ(EndEventJson(killed).dump(),
            R"({"event":{"end":{"error":"signal: killed","exitCode":-1,"exited":false,)"
            R"("status":"signal: killed"}}})");
}

TEST(ProcessWireTest, BuildsListResponse) {
  ProcessInfo a{{"/bin/bash", {"-c", "x"}, {{"K", "V"}}, "/tmp"}, 5, "tag"};
  ProcessInfo b{{"sleep", {}, {}, std::nullopt}, 6, std::nullopt};
  EXPECT_EQ(ListResponseJson({a, b}).dump(),
            R"({"processes":[{"config":{"args":["-c","x"],"cmd":"/bin/bash","cwd":"/tmp",)"
            R"("envs":{"K":"V"}},"pid":5,"tag":"tag"},{"config":{"args":[],"cmd":"sleep",)"
            R"("envs":{}},"pid":6}]})");
  EXPECT_EQ(ListResponseJson({}).dump(), R"({"processes":[]})");
}


// A Connect envelope (flags 0) around `json`.
std::string Envelope(const std::string& json) {
  std::string e(5, '\0');
  for (int i = 0; i < 4; ++i) e[1 + i] = static_cast<char>((json.size() >> (8 * (3 - i))) & 0xff);
  return e + json;
}

TEST(ProcessStreamTest, TextAndEndOfAStream) {
  std::string raw = Envelope(StartEventJson(7).dump()) +
                    Envelope(DataEventJson(OutputKind::kStdout, "out ").dump()) +
                    Envelope(DataEventJson(OutputKind::kStderr, "err").dump()) +
                    Envelope(EndEventJson(EndEvent{3, true, "exit status 3", std::nullopt}).dump());
  EXPECT_EQ(ProcessStreamText(raw), "out err[exited: exit status 3]");
  auto end = ProcessStreamEnd(raw);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->exit_code, 3);
  EXPECT_TRUE(end->exited);
  EXPECT_EQ(end->status, "exit status 3");
  EXPECT_FALSE(end->error.has_value());
}

TEST(ProcessStreamTest, NoEndInACutOrMalformedStream) {
  std::string start = Envelope(StartEventJson(7).dump());
  std::string end = Envelope(EndEventJson(EndEvent{0, true, "exit status 0", std::nullopt}).dump());
  EXPECT_FALSE(ProcessStreamEnd(start).has_value());
  EXPECT_FALSE(ProcessStreamEnd(start + end.substr(0, end.size() - 1)).has_value());  // cut
  EXPECT_FALSE(ProcessStreamEnd(Envelope("not json") + Envelope(R"({"event":{"end":1}})")).has_value());
  EXPECT_FALSE(ProcessStreamEnd("").has_value());
  // A call that failed ends with an error message instead of an end event.
  std::string failed = Envelope(R"({"error":{"code":"not_found","message":"no such file"}})");
  failed[0] = 2;
  EXPECT_FALSE(ProcessStreamEnd(failed).has_value());
  EXPECT_EQ(ProcessStreamText(failed), "[error: no such file]");
  // proto3 JSON leaves out a zero exit code.
  auto e = ProcessStreamEnd(start + Envelope(R"({"event":{"end":{"exited":true,"status":"exit status 0"}}})"));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->exit_code, 0);
  EXPECT_TRUE(e->exited);
}

}  // namespace
}  // namespace kiln::wire

namespace kiln::wire {
namespace {

TEST(ServiceStartBodyTest, ArgvInRootWithoutStdin) {
  nlohmann::json j = nlohmann::json::parse(ServiceStartBody({"/.kiln/interp", "--port", "49999"}));
  EXPECT_EQ(j["process"]["cmd"], "/.kiln/interp");
  EXPECT_EQ(j["process"]["args"], nlohmann::json::array({"--port", "49999"}));
  EXPECT_EQ(j["process"]["cwd"], "/");
  EXPECT_EQ(j["stdin"], false);
  auto parsed = ParseStartRequest(j);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed->process.cmd, "/.kiln/interp");
  EXPECT_EQ(parsed->stdin, false);
}

}  // namespace
}  // namespace kiln::wire
