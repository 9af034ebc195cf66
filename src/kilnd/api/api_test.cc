#include "kilnd/api/api.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/encoding.h"
#include "http/client.h"
#include "kilnd/orchestrator/manager_fixture.h"

namespace kiln::kilnd {
namespace {

namespace asio = boost::asio;
using json = nlohmann::json;
using std::chrono::milliseconds;

// kilnd's API on loopback over a manager with a fake runtime and a fake agent.
class ApiTest : public fakes::ManagerFixture {
 protected:
  void SetUp() override {
    MakeDir("api");
    AddHealthAndInit();
    StartAgent();
    OpenStore();
    keys_ = std::make_unique<ApiKeys>(*store_);
    auto key = keys_->Create("test");
    ASSERT_TRUE(key);
    key_ = *key;
    StartManager(WithoutPool(), BaseTemplate);
    api_ = std::make_unique<Api>(*manager_, *keys_, ApiOptions{});
    server_ = std::make_unique<http::Server>(
        io_, [this](http::Exchange& ex) { return api_->Handle(ex); }, http::ServerOptions{});
    ASSERT_TRUE(server_->Listen("127.0.0.1", 0));
    server_->Start();
    StartIoThread();
  }

  void TearDown() override {
    StopIo();
    server_.reset();
    api_.reset();
    ManagerFixture::TearDown();
  }

  http::ClientResponse Call(http::Verb method, std::string target, std::string body = "",
                            bool with_key = true) {
    auto res = Run([&]() -> http::Task<Result<http::ClientResponse>> {
      auto conn = co_await http::ClientConnection::Connect("127.0.0.1", server_->port(), milliseconds(5000));
      if (!conn) co_return Unexpected(conn.error());
      http::ClientRequest req;
      req.method = method;
      req.target = target;
      req.body = body;
      if (with_key) req.headers.set("X-API-Key", key_);
      co_return co_await conn->Send(std::move(req), milliseconds(5000));
    });
    EXPECT_TRUE(res) << (res ? "" : res.error().message());
    return res ? *res : http::ClientResponse{};
  }

  std::string Create(const json& body) {
    auto r = Call(http::Verb::post, "/v2/sandboxes", body.dump());
    EXPECT_EQ(r.status, 201u) << r.body;
    return json::parse(r.body, nullptr, false).value("sandboxID", "");
  }

  std::unique_ptr<ApiKeys> keys_;
  std::string key_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<http::Server> server_;
};

TEST_F(ApiTest, AuthIsRequiredExceptForHealth) {
  EXPECT_EQ(Call(http::Verb::get, "/health", "", false).status, 200u);
  auto r = Call(http::Verb::get, "/v2/sandboxes", "", false);
  EXPECT_EQ(r.status, 401u);
  EXPECT_EQ(json::parse(r.body)["code"], 401);
}

TEST_F(ApiTest, CreateValidatesItsBody) {
  for (const char* body : {"{", "[]", R"({"templateID":1})", R"({"templateID":"base","timeout":"x"})",
                           R"({"templateID":"base","timeout":-1})", R"({"templateID":"base","metadata":{"a":1}})",
                           R"({"templateID":"base","envVars":[]})", R"({})"}) {
    auto r = Call(http::Verb::post, "/v2/sandboxes", body);
    EXPECT_EQ(r.status, 400u) << body << " -> " << r.body;
    EXPECT_EQ(json::parse(r.body)["code"], 400) << body;
  }
  auto missing = Call(http::Verb::post, "/v2/sandboxes", R"({"templateID":"nope"})");
  EXPECT_EQ(missing.status, 404u);
  auto ok = Call(http::Verb::post, "/sandboxes", R"({"templateID":"base","timeout":30})");
  EXPECT_EQ(ok.status, 201u);
  json j = json::parse(ok.body);
  EXPECT_EQ(j["templateID"], "base");
  EXPECT_EQ(j["envdVersion"], "0.6.13");
  EXPECT_EQ(j["clientID"], "kiln");
  EXPECT_FALSE(j["envdAccessToken"].get<std::string>().empty());
}

TEST_F(ApiTest, GetKillAndUnknownIds) {
  std::string id = Create({{"templateID", "base"}, {"metadata", {{"a", "b"}}}});
  auto got = Call(http::Verb::get, "/sandboxes/" + id);
  ASSERT_EQ(got.status, 200u);
  json j = json::parse(got.body);
  EXPECT_EQ(j["state"], "running");
  EXPECT_EQ(j["metadata"]["a"], "b");
  for (const char* f : {"startedAt", "endAt", "cpuCount", "memoryMB", "diskSizeMB", "envdVersion"}) {
    EXPECT_TRUE(j.contains(f)) << f;
  }
  EXPECT_EQ(Call(http::Verb::delete_, "/sandboxes/" + id).status, 204u);
  auto again = Call(http::Verb::delete_, "/sandboxes/" + id);
  EXPECT_EQ(again.status, 404u);
  EXPECT_EQ(json::parse(again.body)["code"], 404);
  EXPECT_EQ(Call(http::Verb::get, "/sandboxes/" + id).status, 404u);
  EXPECT_EQ(Call(http::Verb::post, "/sandboxes/" + id + "/timeout", R"({"timeout":5})").status, 404u);
  EXPECT_EQ(Call(http::Verb::post, "/sandboxes/" + id + "/pause").status, 404u);
  EXPECT_EQ(Call(http::Verb::post, "/v2/sandboxes/" + id + "/connect", "{}").status, 404u);
  EXPECT_EQ(Call(http::Verb::get, "/sandboxes/" + id + "/metrics").status, 404u);
  // kiln's record still says what happened to it.
  auto record = Call(http::Verb::get, "/kiln/sandboxes/" + id);
  ASSERT_EQ(record.status, 200u);
  json rec = json::parse(record.body);
  EXPECT_EQ(rec["state"], "killed");
  EXPECT_EQ(rec["endReason"], "killed");
  EXPECT_TRUE(rec.contains("endedAt"));
  EXPECT_FALSE(rec.contains("envdAccessToken"));
  EXPECT_EQ(Call(http::Verb::get, "/kiln/sandboxes/inever").status, 404u);
}

TEST_F(ApiTest, ListFiltersByTripleEncodedMetadataAndPaginatesNewestFirst) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(Create({{"templateID", "base"}, {"metadata", {{"k", "v=1&x"}, {"n", std::to_string(i)}}}}));
  }
  Create({{"templateID", "base"}, {"metadata", {{"k", "other"}}}});
  // What the SDK sends for {k: "v=1&x"} (e2b-compat.md §2.5).
  auto r = Call(http::Verb::get, "/v2/sandboxes?metadata=k%3Dv%25253D1%252526x");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(json::parse(r.body).size(), 3u);

  std::vector<std::string> seen;
  std::string next;
  for (int page = 0; page < 5; ++page) {
    std::string target = "/v2/sandboxes?limit=1&metadata=k%3Dv%25253D1%252526x";
    if (!next.empty()) target += "&nextToken=" + http::PercentEncode(next);
    auto p = Call(http::Verb::get, target);
    ASSERT_EQ(p.status, 200u) << p.body;
    for (const auto& s : json::parse(p.body)) seen.push_back(s["sandboxID"]);
    next = std::string(p.Header("X-Next-Token"));
    if (next.empty()) break;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{ids[2], ids[1], ids[0]}));

  auto asc = Call(http::Verb::get, "/v2/sandboxes?order=asc&metadata=k%3Dv%25253D1%252526x");
  auto first = json::parse(asc.body)[0]["sandboxID"];
  EXPECT_EQ(first, ids[0]);
  EXPECT_EQ(Call(http::Verb::get, "/v2/sandboxes?state=sleeping").status, 400u);
  EXPECT_EQ(Call(http::Verb::get, "/v2/sandboxes?limit=0").status, 400u);
  EXPECT_EQ(Call(http::Verb::get, "/v2/sandboxes?nextToken=%25%25").status, 400u);
}

TEST_F(ApiTest, PauseConflictsAndResumeSemantics) {
  std::string id = Create({{"templateID", "base"}});
  EXPECT_EQ(Call(http::Verb::post, "/sandboxes/" + id + "/resume", "{}").status, 409u);
  EXPECT_EQ(Call(http::Verb::post, "/sandboxes/" + id + "/pause").status, 204u);
  auto twice = Call(http::Verb::post, "/sandboxes/" + id + "/pause");
  EXPECT_EQ(twice.status, 409u);
  EXPECT_EQ(json::parse(twice.body)["code"], 409);
  auto listed = json::parse(Call(http::Verb::get, "/v2/sandboxes?state=paused").body);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["state"], "paused");
  EXPECT_TRUE(json::parse(Call(http::Verb::get, "/sandboxes").body).empty());  // v1: running only
  auto resumed = Call(http::Verb::post, "/v2/sandboxes/" + id + "/connect", R"({"timeout":60})");
  EXPECT_EQ(resumed.status, 201u);
  auto attached = Call(http::Verb::post, "/v2/sandboxes/" + id + "/connect", R"({"timeout":60})");
  EXPECT_EQ(attached.status, 200u);
}

TEST_F(ApiTest, TimeoutAndMetricsValidation) {
  std::string id = Create({{"templateID", "base"}});
  EXPECT_EQ(Call(http::Verb::post, "/sandboxes/" + id + "/timeout", R"({"timeout":"x"})").status, 400u);
  EXPECT_EQ(Call(http::Verb::post, "/sandboxes/" + id + "/timeout", "{}").status, 400u);
  EXPECT_EQ(Call(http::Verb::post, "/sandboxes/" + id + "/timeout", R"({"timeout":100})").status, 204u);
  EXPECT_EQ(Call(http::Verb::get, "/sandboxes/" + id + "/metrics?start=abc").status, 400u);
  auto m = Call(http::Verb::get, "/sandboxes/" + id + "/metrics");
  ASSERT_EQ(m.status, 200u);
  json samples = json::parse(m.body);
  ASSERT_FALSE(samples.empty());
  for (const char* f : {"timestamp", "timestampUnix", "cpuCount", "cpuUsedPct", "memUsed", "memTotal",
                        "memCache", "diskUsed", "diskTotal"}) {
    EXPECT_TRUE(samples[0].contains(f)) << f;
  }
  EXPECT_EQ(Call(http::Verb::get, "/nothing/here").status, 404u);
}

}  // namespace
}  // namespace kiln::kilnd
