// The pieces of `kiln mcp` that need no network: JSON-RPC parsing, tool schemas and the
// argument check, the code interpreter's NDJSON stream and the result made from it, the
// command line.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/mcp_command.h"
#include "cli/mcp_interp.h"
#include "cli/mcp_jsonrpc.h"
#include "cli/mcp_sandbox_tools.h"
#include "cli/mcp_tools.h"

namespace kiln::cli::mcp {
namespace {

using nlohmann::json;

int ErrorCode(const ParsedRpc& p) {
  return p.error_response.is_object() ? p.error_response["error"]["code"].get<int>() : 0;
}

TEST(McpJsonRpc, RequestsNotificationsAndResponses) {
  auto req = ParseRpc(R"({"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"cursor":"x"}})");
  ASSERT_TRUE(req.message);
  EXPECT_EQ(req.message->kind, RpcMessage::Kind::kRequest);
  EXPECT_EQ(req.message->id, 7);
  EXPECT_EQ(req.message->method, "tools/list");
  EXPECT_EQ(req.message->params["cursor"], "x");

  auto str_id = ParseRpc(R"({"jsonrpc":"2.0","id":"a-1","method":"ping"})");
  ASSERT_TRUE(str_id.message);
  EXPECT_EQ(str_id.message->id, "a-1");
  EXPECT_TRUE(str_id.message->params.is_null());

  auto note = ParseRpc(R"({"jsonrpc":"2.0","method":"notifications/initialized"})");
  ASSERT_TRUE(note.message);
  EXPECT_EQ(note.message->kind, RpcMessage::Kind::kNotification);

  auto resp = ParseRpc(R"({"jsonrpc":"2.0","id":3,"result":{}})");
  ASSERT_TRUE(resp.message);
  EXPECT_EQ(resp.message->kind, RpcMessage::Kind::kResponse);
}

TEST(McpJsonRpc, MalformedInputBecomesTheRightError) {
  EXPECT_EQ(ErrorCode(ParseRpc("{not json")), kParseError);
  EXPECT_EQ(ErrorCode(ParseRpc("")), kParseError);
  EXPECT_EQ(ErrorCode(ParseRpc("[]")), kInvalidRequest);
  EXPECT_EQ(ErrorCode(ParseRpc("42")), kInvalidRequest);
  EXPECT_EQ(ErrorCode(ParseRpc(R"({"id":1,"method":"ping"})")), kInvalidRequest);
  EXPECT_EQ(ErrorCode(ParseRpc(R"({"jsonrpc":"2.0","id":1.5,"method":"ping"})")), kInvalidRequest);
  EXPECT_EQ(ErrorCode(ParseRpc(R"({"jsonrpc":"2.0","id":null,"method":"ping"})")), kInvalidRequest);
  EXPECT_EQ(ErrorCode(ParseRpc(R"({"jsonrpc":"2.0","id":1,"method":""})")), kInvalidRequest);
  EXPECT_EQ(ErrorCode(ParseRpc(R"({"jsonrpc":"2.0","id":1})")), kInvalidRequest);
  EXPECT_EQ(ErrorCode(ParseRpc(R"({"jsonrpc":"2.0","id":1,"result":1,"error":{}})")), kInvalidRequest);
  EXPECT_EQ(ErrorCode(ParseRpc(R"({"jsonrpc":"2.0","id":1,"method":"ping","params":[1]})")),
            kInvalidParams);
  // The id is echoed when it could be read.
  EXPECT_EQ(ParseRpc(R"({"jsonrpc":"1.0","id":"q","method":"ping"})").error_response["id"], "q");
  EXPECT_TRUE(ParseRpc("{bad").error_response["id"].is_null());
  // A notification with bad params is not answered.
  auto note = ParseRpc(R"({"jsonrpc":"2.0","method":"x","params":5})");
  ASSERT_TRUE(note.message);
  EXPECT_TRUE(note.message->params.is_null());
}

TEST(McpTools, DefinitionsHaveSchemas) {
  json tools = ToolDefinitions(ToolOptions{});
  EXPECT_EQ(tools.size(), 10u);
  for (const auto& t : tools) {
    EXPECT_EQ(t["inputSchema"]["type"], "object") << t["name"];
    EXPECT_EQ(t["inputSchema"]["additionalProperties"], false) << t["name"];
    EXPECT_GT(t["description"].get<std::string>().size(), 40u) << t["name"];
  }
  ASSERT_NE(FindTool(tools, "run_code"), nullptr);
  EXPECT_EQ(FindTool(tools, "nope"), nullptr);
  ToolOptions no_files;
  no_files.host_files = false;
  json fewer = ToolDefinitions(no_files);
  EXPECT_EQ(fewer.size(), 8u);
  EXPECT_EQ(FindTool(fewer, "upload"), nullptr);
}

TEST(McpTools, ArgumentsAreCheckedAgainstTheSchema) {
  json tools = ToolDefinitions(ToolOptions{});
  const json& run = (*FindTool(tools, "run_command"))["inputSchema"];
  EXPECT_TRUE(CheckArguments(run, json::parse(R"({"cmd":"ls","timeout":5,"env":{"A":"b"}})")));
  EXPECT_TRUE(CheckArguments(run, json::parse(R"({"cmd":"ls","timeout":5.0})")));
  auto msg = [&](const char* args) {
    auto st = CheckArguments(run, json::parse(args));
    return st ? std::string("ok") : st.error().message();
  };
  EXPECT_EQ(msg(R"({})"), "missing required argument \"cmd\"");
  EXPECT_EQ(msg(R"({"cmd":1})"), "argument \"cmd\" must be a string");
  EXPECT_EQ(msg(R"({"cmd":"x","timeout":0})"), "argument \"timeout\" must be at least 1");
  EXPECT_EQ(msg(R"({"cmd":"x","timeout":2.5})"), "argument \"timeout\" must be an integer");
  EXPECT_EQ(msg(R"({"cmd":"x","env":{"A":1}})"), "argument \"env\".A must be a string");
  EXPECT_EQ(msg(R"({"cmd":"x","background":"yes"})"), "argument \"background\" must be a boolean");
  EXPECT_NE(msg(R"({"cmd":"x","bogus":1})").find("unknown argument \"bogus\""), std::string::npos);
  const json& code = (*FindTool(tools, "run_code"))["inputSchema"];
  EXPECT_FALSE(CheckArguments(code, json::parse(R"({"code":"1","language":"cobol"})")));
  EXPECT_TRUE(CheckArguments(code, json::parse(R"({"code":"1","language":"bash"})")));
  const json& list = (*FindTool(tools, "list_sandboxes"))["inputSchema"];
  EXPECT_TRUE(CheckArguments(list, json::parse(R"({"state":["running"]})")));
  EXPECT_FALSE(CheckArguments(list, json::parse(R"({"state":["gone"]})")));
  EXPECT_FALSE(CheckArguments(list, json::parse(R"([])")));

  json args = json::parse(R"({"s":"x","n":3.0,"b":true,"m":{"k":"v","x":1},"l":["a",2]})");
  EXPECT_EQ(OptString(args, "s"), "x");
  EXPECT_EQ(OptString(args, "n"), std::nullopt);
  EXPECT_EQ(OptInt(args, "n"), 3);
  EXPECT_EQ(OptBool(args, "b"), true);
  EXPECT_EQ(StringMap(args, "m").size(), 1u);
  EXPECT_EQ(StringList(args, "l"), std::vector<std::string>{"a"});
}

TEST(McpInterp, StreamDecodesLinesSplitAnywhere) {
  std::string body =
      R"({"type":"number_of_executions","execution_count":3})"
      "\n"
      R"({"type":"stdout","text":"hel","timestamp":"t"})"
      "\n"
      R"({"type":"stdout","text":"lo\n","timestamp":"t"})"
      "\n"
      R"({"type":"keepalive"})"
      "\n"
      R"({"type":"result","is_main_result":false,"png":"iVBORw0K","text":"<Figure>","extra":{}})"
      "\n"
      R"({"type":"result","is_main_result":true,"text":"42","html":"<b>42</b>"})"
      "\n"
      R"({"type":"something_new","x":1})"
      "\n"
      R"({"type":"end_of_execution"})";
  for (size_t step : {1u, 7u, 1000u}) {
    ExecutionStream stream;
    for (size_t i = 0; i < body.size(); i += step) {
      ASSERT_TRUE(stream.Feed(std::string_view(body).substr(i, step)));
    }
    ASSERT_TRUE(stream.Finish());
    const CodeExecution& ex = stream.execution();
    EXPECT_EQ(ex.stdout_text, "hello\n");
    EXPECT_EQ(ex.execution_count, 3);
    ASSERT_EQ(ex.results.size(), 2u);
    EXPECT_FALSE(ex.results[0].is_main);
    EXPECT_EQ(ex.results[0].png, "iVBORw0K");
    EXPECT_EQ(ex.results[1].text, "42");
    EXPECT_EQ(ex.results[1].formats, (std::vector<std::string>{"html", "text"}));
    EXPECT_TRUE(ex.ended);
  }
  ExecutionStream bad;
  EXPECT_FALSE(bad.Feed("not json\n"));
}

TEST(McpInterp, ResultCarriesTextImagesAndErrors) {
  CodeExecution ex;
  ex.stdout_text = "out\n";
  ex.stderr_text = "warn\n";
  CodeResult chart;
  chart.png = "iVBORw0K";
  chart.text = "<Figure size 640x480>";
  ex.results.push_back(chart);
  CodeResult main;
  main.is_main = true;
  main.text = "42";
  ex.results.push_back(main);
  json r = CodeExecutionResult(ex, "");
  EXPECT_EQ(r["isError"], false);
  ASSERT_EQ(r["content"].size(), 2u);
  std::string text = r["content"][0]["text"];
  EXPECT_NE(text.find("[stdout]\nout\n"), std::string::npos);
  EXPECT_NE(text.find("[stderr]\nwarn\n"), std::string::npos);
  EXPECT_NE(text.find("[result]\n42\n"), std::string::npos);
  EXPECT_EQ(text.find("Figure size"), std::string::npos);  // the image stands for it
  EXPECT_EQ(r["content"][1]["type"], "image");
  EXPECT_EQ(r["content"][1]["mimeType"], "image/png");
  EXPECT_EQ(r["content"][1]["data"], "iVBORw0K");
  EXPECT_EQ(r["structuredContent"]["text"], "42");

  CodeExecution failed;
  failed.error = CodeError{"NameError", "name 'y' is not defined",
                           "\x1b[0;31mNameError\x1b[0m: name 'y' is not defined"};
  json e = CodeExecutionResult(failed, "");
  EXPECT_EQ(e["isError"], true);
  EXPECT_EQ(e["structuredContent"]["error"]["traceback"], "NameError: name 'y' is not defined");
  EXPECT_NE(e["content"][0]["text"].get<std::string>().find("[error] NameError"), std::string::npos);

  EXPECT_EQ(CodeExecutionResult(CodeExecution{}, "")["content"][0]["text"], "(no output)\n");
}

TEST(McpInterp, RequestBodyAndHelpers) {
  ExecuteSpec spec;
  spec.code = "print(1)";
  EXPECT_EQ(json::parse(ExecuteRequestBody(spec)), json::parse(R"j({"code":"print(1)"})j"));
  spec.language = "python";
  spec.context_id = "c1";
  spec.env["A"] = "b";
  EXPECT_EQ(json::parse(ExecuteRequestBody(spec)),
            json::parse(R"j({"code":"print(1)","language":"python","context_id":"c1","env_vars":{"A":"b"}})j"));
  EXPECT_EQ(StripAnsi("\x1b[1;32mok\x1b[0m done\x1b("), "ok done");
  EXPECT_EQ(Truncate("abcdef", 10), "abcdef");
  EXPECT_EQ(Truncate(std::string(100, 'x'), 10), "xxxxx\n[... 90 bytes omitted ...]\nxxxxx");
}

TEST(McpFiles, Utf8AndImageDetection) {
  EXPECT_TRUE(IsUtf8("plain ascii\n"));
  EXPECT_TRUE(IsUtf8("step ✓ 🚀"));
  EXPECT_FALSE(IsUtf8(std::string("\xff\xfe", 2)));
  EXPECT_FALSE(IsUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_EQ(ImageType(std::string("\x89PNG\r\n\x1a\n....", 12)), "image/png");
  EXPECT_EQ(ImageType("\xff\xd8\xff\xe0"), "image/jpeg");
  EXPECT_EQ(ImageType("GIF89a..."), "image/gif");
  EXPECT_EQ(ImageType("RIFF....WEBPVP8 "), "image/webp");
  EXPECT_EQ(ImageType("hello"), "");
}

Environment Env(std::map<std::string, std::string> vars) {
  Environment env;
  env.getenv = [vars](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
  return env;
}

TEST(McpCommandLine, RecognizesTheCommandAfterGlobalFlags) {
  EXPECT_TRUE(IsMcpCommand({"mcp"}));
  EXPECT_TRUE(IsMcpCommand({"--api-url", "http://x:1", "mcp", "--http", ":0"}));
  EXPECT_TRUE(IsMcpCommand({"--api-key=k", "mcp"}));
  EXPECT_FALSE(IsMcpCommand({"sandbox", "mcp"}));
  EXPECT_FALSE(IsMcpCommand({"--api-url", "mcp"}));
  EXPECT_FALSE(IsMcpCommand({}));
}

TEST(McpCommandLine, ConnectionFromFlagsThenKilnThenE2bVariables) {
  auto parse = [](std::vector<std::string> args, std::map<std::string, std::string> vars) {
    return ParseMcpCommand(args, Env(std::move(vars)));
  };
  auto none = parse({"mcp"}, {});
  ASSERT_TRUE(none);
  EXPECT_EQ(none->config.endpoint.url, "http://127.0.0.1:3000");
  EXPECT_EQ(none->config.api_key, "");
  EXPECT_FALSE(none->http);
  EXPECT_EQ(none->config.tools.default_template, "code-interpreter-v1");
  EXPECT_EQ(none->config.tools.fallback_template, "base");

  auto e2b = parse({"mcp"}, {{"E2B_API_URL", "http://e2b:1"}, {"E2B_API_KEY", "e2b_k"}});
  ASSERT_TRUE(e2b);
  EXPECT_EQ(e2b->config.endpoint.url, "http://e2b:1");
  EXPECT_EQ(e2b->config.api_key, "e2b_k");
  auto kiln = parse({"mcp"}, {{"E2B_API_URL", "http://e2b:1"}, {"KILN_API_URL", "http://kiln:2"},
                              {"E2B_API_KEY", "a"}, {"KILN_API_KEY", "b"}});
  ASSERT_TRUE(kiln);
  EXPECT_EQ(kiln->config.endpoint.port, 2);
  EXPECT_EQ(kiln->config.api_key, "b");
  auto flags = parse({"--api-url", "http://flag:3", "mcp", "--api-key", "c", "--http", "127.0.0.1:0",
                      "--template", "base", "--sandbox-timeout", "60", "--session-idle", "5",
                      "--no-host-files"},
                     {{"KILN_API_URL", "http://kiln:2"}});
  ASSERT_TRUE(flags) << flags.error().message();
  EXPECT_EQ(flags->config.endpoint.port, 3);
  EXPECT_EQ(flags->config.api_key, "c");
  ASSERT_TRUE(flags->http);
  EXPECT_EQ(flags->http->host, "127.0.0.1");
  EXPECT_EQ(flags->http->port, 0);
  EXPECT_EQ(flags->http->session_idle, std::chrono::seconds(5));
  EXPECT_EQ(flags->config.tools.default_template, "base");
  EXPECT_EQ(flags->config.tools.fallback_template, "base");
  EXPECT_EQ(flags->config.tools.sandbox_timeout_s, 60);
  EXPECT_FALSE(flags->config.tools.host_files);

  EXPECT_FALSE(parse({"mcp", "--http", "nope"}, {}));
  EXPECT_FALSE(parse({"mcp", "--http", "1.2.3.4:99999"}, {}));
  EXPECT_FALSE(parse({"mcp", "--session-idle", "5"}, {}));
  EXPECT_FALSE(parse({"mcp", "--bogus"}, {}));
  EXPECT_FALSE(parse({"mcp", "extra"}, {}));
  EXPECT_FALSE(parse({"mcp", "--api-url", "https://x"}, {}));
  auto v6 = parse({"mcp", "--http", "[::1]:8080"}, {});
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->http->host, "::1");
  EXPECT_TRUE(parse({"mcp", "--help"}, {})->help);
}

}  // namespace
}  // namespace kiln::cli::mcp
