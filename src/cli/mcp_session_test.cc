// McpSession against an in-process fake that plays kilnd (control API) and, behind the same
// port, the agents in its sandboxes: envd (process.Process/Start) on port 49983 and the code
// interpreter's NDJSON /execute on 49999. Covers the default sandbox, run_code, run_command,
// ownership and the cleanup at Close().

#include "cli/mcp_session.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "base/encoding.h"
#include "cli/endpoint.h"
#include "http/connect.h"
#include "http/server.h"

namespace kiln::cli::mcp {
namespace {

namespace net = boost::asio;
using http::Exchange;
using http::Response;
using http::Task;
using nlohmann::json;

constexpr char kApiKey[] = "e2b_mcp_test";
constexpr char kToken[] = "tok-mcp";

// --- what the fake sends (outside coroutines: g++ 12 and braced json) ---

std::string Frame(const json& event) {
  json msg = json::object();
  msg["event"] = event;
  return http::connect::EncodeEnvelope(0, msg.dump());
}

std::string StartFrame() { return Frame(json::parse(R"({"start":{"pid":42}})")); }

std::string DataFrame(const char* stream, std::string_view bytes) {
  json data = json::object();
  data[stream] = Base64Encode(bytes);
  json ev = json::object();
  ev["data"] = data;
  return Frame(ev);
}

std::string EndFrame(int code) {
  json end = json::object();
  end["exitCode"] = code;
  end["exited"] = true;
  end["status"] = "exit status " + std::to_string(code);
  json ev = json::object();
  ev["end"] = end;
  return Frame(ev);
}

std::string EndStream() { return http::connect::EncodeEnvelope(2, "{}"); }

json Sandbox(const std::string& id, const std::string& tmpl) {
  json j = json::object();
  j["sandboxID"] = id;
  j["templateID"] = tmpl;
  j["alias"] = tmpl;
  j["state"] = "running";
  j["envdAccessToken"] = kToken;
  j["envdVersion"] = "0.6.13";
  j["startedAt"] = "2025-01-01T00:00:00Z";
  j["endAt"] = "2025-01-01T00:30:00Z";
  j["metadata"] = json::object();
  return j;
}

// The /execute answer for a cell, by its code.
std::string ExecuteAnswer(const std::string& code) {
  std::string out = R"({"type":"number_of_executions","execution_count":1})" "\n";
  if (code == "x * 2") {
    out += R"({"type":"result","is_main_result":true,"text":"42"})" "\n";
  } else if (code == "plot") {
    out += R"({"type":"stdout","text":"drawing\n","timestamp":"t"})" "\n";
    out += R"({"type":"result","is_main_result":false,"png":"iVBORw0KGgo=","text":"<Figure>","extra":{}})" "\n";
  } else if (code == "1/0") {
    out += R"({"type":"error","name":"ZeroDivisionError","value":"division by zero",)"
           R"("traceback":"\u001b[31mZeroDivisionError\u001b[0m: division by zero"})" "\n";
  }
  out += R"({"type":"end_of_execution"})";  // the last line has no '\n': taken at the end
  return out;
}

class FakeKilnd {
 public:
  FakeKilnd() : server_(io_, [this](Exchange& ex) { return Handle(ex); }, http::ServerOptions{}) {
    Status st = server_.Listen("127.0.0.1", 0);
    EXPECT_TRUE(st) << st.error().message();
    server_.Start();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~FakeKilnd() {
    io_.stop();
    thread_.join();
  }

  uint16_t port() const { return server_.port(); }
  void set_interp_template(bool available) { interp_template_ = available; }

  int creates() {
    std::lock_guard lock(mu_);
    return creates_;
  }
  std::vector<std::string> created_templates() {
    std::lock_guard lock(mu_);
    return created_templates_;
  }
  std::vector<std::string> deleted() {
    std::lock_guard lock(mu_);
    return deleted_;
  }
  std::vector<json> executes() {
    std::lock_guard lock(mu_);
    return executes_;
  }
  std::map<std::string, std::string> execute_headers() {
    std::lock_guard lock(mu_);
    return execute_headers_;
  }

 private:
  Task<void> Handle(Exchange& ex) {
    const auto& head = ex.request();
    auto body = co_await ex.ReadBody(16 << 20);
    std::string text = body ? *body : "";
    std::string sandbox(head.Header("E2b-Sandbox-Id"));
    if (!sandbox.empty()) co_return co_await InSandbox(ex, sandbox, text);
    if (head.Header("X-API-Key") != kApiKey) {
      co_return (void)co_await ex.Respond(Response::JsonError(401, "Invalid API key"));
    }
    if (head.method == http::Verb::post && head.path == "/v2/sandboxes") co_return co_await Create(ex, text);
    if (head.method == http::Verb::get && head.path == "/v2/sandboxes") {
      json list = json::array();
      {
        std::lock_guard lock(mu_);
        for (const auto& [id, tmpl] : alive_) list.push_back(Sandbox(id, tmpl));
      }
      co_return (void)co_await ex.Respond(Response::Json(200, list.dump()));
    }
    std::string id = head.path.starts_with("/sandboxes/") ? head.path.substr(11) : "";
    std::string tmpl;
    bool alive = false;
    {
      std::lock_guard lock(mu_);
      auto it = alive_.find(id);
      alive = it != alive_.end();
      if (alive) tmpl = it->second;
      if (alive && head.method == http::Verb::delete_) {
        alive_.erase(it);
        deleted_.push_back(id);
      }
    }
    if (!alive) {
      co_return (void)co_await ex.Respond(Response::JsonError(404, "sandbox \"" + id + "\" not found"));
    }
    if (head.method == http::Verb::delete_) co_return (void)co_await ex.Respond(Response::Empty(204));
    co_await ex.Respond(Response::Json(200, Sandbox(id, tmpl).dump()));
  }

  Task<void> Create(Exchange& ex, const std::string& body) {
    json req = json::parse(body, nullptr, false);
    std::string tmpl = req.value("templateID", "");
    std::string id;
    {
      std::lock_guard lock(mu_);
      ++creates_;
      if (tmpl == "code-interpreter-v1" && !interp_template_) tmpl.clear();
      if (!tmpl.empty()) {
        id = "sbx" + std::to_string(creates_);
        alive_[id] = tmpl;
        created_templates_.push_back(tmpl);
      }
    }
    if (id.empty()) {
      co_return (void)co_await ex.Respond(Response::JsonError(404, "template '" + req.value("templateID", "") + "' is not built"));
    }
    co_await ex.Respond(Response::Json(201, Sandbox(id, tmpl).dump()));
  }

  Task<void> InSandbox(Exchange& ex, const std::string& id, const std::string& body) {
    const auto& head = ex.request();
    std::string port(head.Header("E2b-Sandbox-Port"));
    std::string tmpl;
    {
      std::lock_guard lock(mu_);
      auto it = alive_.find(id);
      if (it != alive_.end()) tmpl = it->second;
    }
    if (tmpl.empty()) co_return (void)co_await ex.Respond(Response::JsonError(502, "sandbox not found"));
    if (head.Header("X-Access-Token") != kToken) {
      co_return (void)co_await ex.Respond(Response::JsonError(401, "bad token"));
    }
    if (port == "49999") {
      if (tmpl != "code-interpreter-v1") {
        co_return (void)co_await ex.Respond(Response::JsonError(502, "port 49999 is not open"));
      }
      json req = json::parse(body, nullptr, false);
      {
        std::lock_guard lock(mu_);
        executes_.push_back(req);
        for (const auto& f : head.headers) execute_headers_[std::string(f.name_string())] = std::string(f.value());
      }
      http::Fields h;
      h.set("Content-Type", "application/x-ndjson");
      co_await ex.StartStream(200, std::move(h));
      co_await ex.WriteStream(ExecuteAnswer(req.value("code", "")));
      co_return (void)co_await ex.FinishStream();
    }
    if (port == "49983" && head.path == "/process.Process/Start") {
      http::Fields h;
      h.set("Content-Type", "application/connect+json");
      co_await ex.StartStream(200, std::move(h));
      co_await ex.WriteStream(StartFrame());
      co_await ex.WriteStream(DataFrame("stdout", "hello\n"));
      co_await ex.WriteStream(DataFrame("stderr", "oops\n"));
      co_await ex.WriteStream(EndFrame(3));
      co_await ex.WriteStream(EndStream());
      co_return (void)co_await ex.FinishStream();
    }
    co_await ex.Respond(Response::JsonError(404, "no route " + head.path));
  }

  net::io_context io_{1};
  http::Server server_;
  std::thread thread_;
  std::mutex mu_;
  bool interp_template_ = true;
  int creates_ = 0;
  std::map<std::string, std::string> alive_;
  std::vector<std::string> created_templates_;
  std::vector<std::string> deleted_;
  std::vector<json> executes_;
  std::map<std::string, std::string> execute_headers_;
};

json Call(const std::string& tool, const json& args) {
  json params = json::object();
  params["name"] = tool;
  params["arguments"] = args;
  json req = json::object();
  req["jsonrpc"] = "2.0";
  req["id"] = 1;
  req["method"] = "tools/call";
  req["params"] = params;
  return req;
}

class McpSessionTest : public ::testing::Test {
 protected:
  McpSessionTest() {
    McpConfig config;
    config.endpoint = *ParseEndpoint("http://127.0.0.1:" + std::to_string(fake_.port()));
    config.api_key = kApiKey;
    session_ = std::make_unique<McpSession>(io_.get_executor(), config);
  }
  ~McpSessionTest() override {
    session_.reset();
  }

  // Sends one message and returns the response (null when there is none).
  json Send(const json& message) { return SendAll({message})[0]; }

  // Sends messages concurrently; responses in the same order.
  std::vector<json> SendAll(const std::vector<json>& messages) {
    std::vector<json> out(messages.size());
    for (size_t i = 0; i < messages.size(); ++i) {
      auto done = [&out, i](std::exception_ptr e, std::optional<json> r) {
        EXPECT_FALSE(e);
        out[i] = r ? *r : json(nullptr);
      };
      net::co_spawn(io_, session_->HandleText(messages[i].dump()), done);
    }
    io_.restart();
    io_.run();
    return out;
  }

  json Tool(const std::string& tool, const json& args) {
    json r = Send(Call(tool, args));
    EXPECT_TRUE(r.contains("result")) << r.dump();
    return r["result"];
  }

  void Close() {
    net::co_spawn(io_, session_->Close(), [](std::exception_ptr) {});
    io_.restart();
    io_.run();
  }

  static std::string Text(const json& result) { return result["content"][0]["text"]; }

  FakeKilnd fake_;
  net::io_context io_{1};
  std::unique_ptr<McpSession> session_;
};

TEST_F(McpSessionTest, InitializeNegotiatesTheProtocolVersion) {
  json init = json::parse(
      R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})");
  json r = Send(init);
  EXPECT_EQ(r["result"]["protocolVersion"], "2025-03-26");
  EXPECT_EQ(r["result"]["serverInfo"]["name"], "kiln");
  EXPECT_TRUE(r["result"]["capabilities"]["tools"].is_object());
  init["params"]["protocolVersion"] = "2025-11-25";
  EXPECT_EQ(Send(init)["result"]["protocolVersion"], "2025-06-18");
  EXPECT_EQ(Send(json::parse(R"({"jsonrpc":"2.0","method":"notifications/initialized"})")), nullptr);
  EXPECT_EQ(Send(json::parse(R"({"jsonrpc":"2.0","id":2,"method":"ping"})"))["result"], json::object());
  EXPECT_EQ(Send(json::parse(R"({"jsonrpc":"2.0","id":3,"method":"tools/list"})"))["result"]["tools"].size(), 10u);
  EXPECT_EQ(Send(json::parse(R"({"jsonrpc":"2.0","id":4,"method":"prompts/list"})"))["error"]["code"], -32601);
  EXPECT_EQ(Send(Call("nope", json::object()))["error"]["code"], -32602);
}

TEST_F(McpSessionTest, RunCodeUsesALazilyCreatedDefaultSandbox) {
  json r = Tool("run_code", json::parse(R"({"code":"x * 2"})"));
  EXPECT_EQ(r["isError"], false) << r.dump();
  EXPECT_EQ(r["structuredContent"]["text"], "42");
  EXPECT_EQ(r["structuredContent"]["sandbox_id"], "sbx1");
  EXPECT_NE(Text(r).find("[result]\n42"), std::string::npos);
  EXPECT_NE(Text(r).find("default sandbox sbx1, template code-interpreter-v1"), std::string::npos);
  EXPECT_EQ(fake_.created_templates(), std::vector<std::string>{"code-interpreter-v1"});
  auto headers = fake_.execute_headers();
  EXPECT_EQ(headers["E2b-Sandbox-Port"], "49999");
  EXPECT_EQ(headers["X-Access-Token"], kToken);
  ASSERT_EQ(fake_.executes().size(), 1u);
  EXPECT_EQ(fake_.executes()[0], json::parse(R"({"code":"x * 2"})"));

  json plot = Tool("run_code", json::parse(R"({"code":"plot","language":"python"})"));
  EXPECT_EQ(plot["isError"], false);
  ASSERT_EQ(plot["content"].size(), 2u);
  EXPECT_EQ(plot["content"][1]["type"], "image");
  EXPECT_EQ(plot["content"][1]["mimeType"], "image/png");
  EXPECT_EQ(plot["content"][1]["data"], "iVBORw0KGgo=");
  EXPECT_EQ(fake_.executes()[1]["language"], "python");

  json error = Tool("run_code", json::parse(R"({"code":"1/0"})"));
  EXPECT_EQ(error["isError"], true);
  EXPECT_EQ(error["structuredContent"]["error"]["name"], "ZeroDivisionError");
  EXPECT_EQ(error["structuredContent"]["error"]["traceback"], "ZeroDivisionError: division by zero");
  EXPECT_EQ(fake_.creates(), 1);  // one default sandbox for all three
  Close();
  EXPECT_EQ(fake_.deleted(), std::vector<std::string>{"sbx1"});
}

TEST_F(McpSessionTest, ConcurrentCallsShareOneDefaultSandbox) {
  std::vector<json> calls;
  for (int i = 0; i < 4; ++i) calls.push_back(Call("run_command", json::parse(R"({"cmd":"echo"})")));
  auto results = SendAll(calls);
  for (const auto& r : results) EXPECT_EQ(r["result"]["structuredContent"]["sandbox_id"], "sbx1") << r.dump();
  EXPECT_EQ(fake_.creates(), 1);
}

TEST_F(McpSessionTest, MissingCodeInterpreterFallsBackToBaseAndRunCodeExplains) {
  fake_.set_interp_template(false);
  json cmd = Tool("run_command", json::parse(R"({"cmd":"echo"})"));
  EXPECT_EQ(cmd["isError"], true);  // exit 3
  EXPECT_EQ(cmd["structuredContent"]["exit_code"], 3);
  EXPECT_EQ(cmd["structuredContent"]["stdout"], "hello\n");
  EXPECT_EQ(cmd["structuredContent"]["stderr"], "oops\n");
  EXPECT_NE(Text(cmd).find("exit code: 3"), std::string::npos);
  EXPECT_EQ(fake_.created_templates(), std::vector<std::string>{"base"});
  json code = Tool("run_code", json::parse(R"({"code":"1"})"));
  EXPECT_EQ(code["isError"], true);
  EXPECT_NE(Text(code).find("template base) has no code interpreter"), std::string::npos) << Text(code);
  EXPECT_NE(Text(code).find("code-interpreter-v1"), std::string::npos);
  // Asked for by name, a missing template is an error, not a fallback.
  json named = Tool("create_sandbox", json::parse(R"({"template":"code-interpreter-v1"})"));
  EXPECT_EQ(named["isError"], true);
  EXPECT_NE(Text(named).find("is not built"), std::string::npos) << Text(named);
}

TEST_F(McpSessionTest, CloseKillsOwnedSandboxesButNotKeptOrForeignOnes) {
  json kept = Tool("create_sandbox", json::parse(R"({"template":"base","keep":true})"));
  EXPECT_EQ(kept["structuredContent"]["sandbox_id"], "sbx1");
  EXPECT_EQ(kept["structuredContent"]["default"], true);  // the first one becomes the default
  json other = Tool("create_sandbox", json::parse(R"({"template":"base","make_default":false})"));
  EXPECT_EQ(other["structuredContent"]["default"], false);
  json listed = Tool("list_sandboxes", json::object());
  ASSERT_EQ(listed["structuredContent"]["sandboxes"].size(), 2u);
  for (const auto& s : listed["structuredContent"]["sandboxes"]) {
    EXPECT_EQ(s["created_by_this_session"], true);
    EXPECT_EQ(s["default"], s["sandbox_id"] == "sbx1");
    EXPECT_EQ(s["kept_after_session"], s["sandbox_id"] == "sbx1");
  }
  json killed = Tool("kill_sandbox", json::parse(R"({"sandbox_id":"sbx1"})"));
  EXPECT_EQ(killed["isError"], false);
  EXPECT_NE(Text(killed).find("It was the default sandbox"), std::string::npos);
  json again = Tool("kill_sandbox", json::parse(R"({"sandbox_id":"sbx1"})"));
  EXPECT_EQ(again["isError"], true);
  EXPECT_NE(Text(again).find("not found"), std::string::npos);
  json kept2 = Tool("create_sandbox", json::parse(R"({"template":"base","keep":true})"));
  EXPECT_EQ(kept2["structuredContent"]["sandbox_id"], "sbx3");
  Close();
  EXPECT_EQ(fake_.deleted(), (std::vector<std::string>{"sbx1", "sbx2"}));
  // After the end, calls fail cleanly.
  json late = Tool("list_sandboxes", json::object());
  EXPECT_EQ(late["isError"], true);
  EXPECT_NE(Text(late).find("session has ended"), std::string::npos);
}

TEST_F(McpSessionTest, ToolFailuresAreResultsNotProtocolErrors) {
  json bad = Tool("run_command", json::parse(R"({"cmd":"x","sandbox_id":"Not-An-Id"})"));
  EXPECT_EQ(bad["isError"], true);
  EXPECT_NE(Text(bad).find("not a sandbox ID"), std::string::npos);
  json unknown = Tool("read_file", json::parse(R"({"path":"/x","sandbox_id":"zzz"})"));
  EXPECT_EQ(unknown["isError"], true);
  EXPECT_NE(Text(unknown).find("404"), std::string::npos) << Text(unknown);
  json args = Tool("run_code", json::parse(R"({"code":1})"));
  EXPECT_EQ(args["isError"], true);
  EXPECT_NE(Text(args).find("\"code\" must be a string"), std::string::npos);
  EXPECT_EQ(fake_.creates(), 0);
}

TEST(McpSessionUnreachable, KilndDownIsAToolError) {
  net::io_context io(1);
  McpConfig config;
  config.endpoint = *ParseEndpoint("http://127.0.0.1:1");
  McpSession session(io.get_executor(), config);
  std::optional<json> out;
  net::co_spawn(io, session.HandleText(Call("list_sandboxes", json::object()).dump()),
                [&](std::exception_ptr, std::optional<json> r) { out = r; });
  io.run();
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ((*out)["result"]["isError"], true);
  EXPECT_NE((*out)["result"]["content"][0]["text"].get<std::string>().find("cannot reach kilnd"),
            std::string::npos);
}

}  // namespace
}  // namespace kiln::cli::mcp
