#include "envd/filesystem/filesystem_service.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <thread>

#include "base/encoding.h"
#include "envd/filesystem/dir_watcher.h"

namespace kiln::envd {
namespace {

namespace fs = std::filesystem;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using http::connect::CallContext;
using nlohmann::json;

// The service on a temporary root: accounts name the test's own uid as "tester", whose
// home is <root>/home/tester.
class FilesystemServiceTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-fssvc-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    home_ = root_ + "/home/tester";
    fs::create_directories(root_ + "/etc");
    fs::create_directories(home_);
    std::ofstream(root_ + "/etc/passwd")
        << "tester:x:" << getuid() << ":" << getgid() << "::" << home_ << ":/bin/sh\n";
    std::ofstream(root_ + "/etc/group") << "testers:x:" << getgid() << ":\n";
    state_.users = sys::UserDb(root_);
    state_.default_user = "tester";
    service_ = std::make_unique<FilesystemService>(io_, state_);
  }
  void TearDown() override {
    service_.reset();
    fs::remove_all(root_);
  }

  CallContext Ctx() const { return CallContext{head_, std::nullopt}; }
  void WriteFile(const std::string& path, const std::string& data) { std::ofstream(path) << data; }
  static void ExpectCode(const Result<json>& r, Errc code) {
    ASSERT_FALSE(r) << r->dump();
    EXPECT_EQ(r.error().code(), code) << r.error().message();
  }
  // Runs an asynchronous RPC to completion on the loop.
  template <typename Method>
  Result<json> Call(Method method, json req) {
    CallContext ctx = Ctx();
    std::optional<Result<json>> out;
    net::co_spawn(io_, (service_.get()->*method)(ctx, req),
                  [&](std::exception_ptr, Result<json> r) { out.emplace(std::move(r)); });
    io_.restart();  // it stops whenever it runs out of work
    while (!out && io_.run_one() > 0) {
    }
    EXPECT_TRUE(out.has_value());
    if (!out) return Fail(Errc::kInternal, "the call never completed");
    return std::move(*out);
  }
  // Polls GetWatcherEvents, running the loop in between, until some events arrive.
  json PollEvents(const std::string& id) {
    for (int i = 0; i < 50; ++i) {
      io_.run_for(std::chrono::milliseconds(20));
      io_.restart();
      auto r = service_->GetWatcherEvents(Ctx(), json{{"watcherId", id}});
      EXPECT_TRUE(r);
      if (!r || !(*r)["events"].empty()) return r ? (*r)["events"] : json();
    }
    return json::array();
  }

  net::io_context io_;
  AgentState state_;
  http::RequestHead head_;
  std::unique_ptr<FilesystemService> service_;
  std::string root_;
  std::string home_;
};

TEST_F(FilesystemServiceTest, StatResolvesRelativeAndTildePathsAgainstHome) {
  WriteFile(home_ + "/file.txt", "abc");
  for (const char* p : {"file.txt", "~/file.txt", "./sub/../file.txt"}) {
    auto r = service_->Stat(Ctx(), json{{"path", p}});
    ASSERT_TRUE(r) << p << ": " << r.error().message();
    EXPECT_EQ((*r)["entry"]["path"], home_ + "/file.txt");
    EXPECT_EQ((*r)["entry"]["size"], "3");
    EXPECT_EQ((*r)["entry"]["owner"], "tester");
  }
}

TEST_F(FilesystemServiceTest, StatMissingIsNotFound) {
  ExpectCode(service_->Stat(Ctx(), json{{"path", "/definitely/not/here"}}), Errc::kNotFound);
}

TEST_F(FilesystemServiceTest, WrongFieldTypesAreInvalidArgument) {
  ExpectCode(service_->Stat(Ctx(), json{{"path", 5}}), Errc::kInvalidArgument);
  ExpectCode(Call(&FilesystemService::ListDir, json{{"path", home_}, {"depth", "deep"}}),
             Errc::kInvalidArgument);
  ExpectCode(Call(&FilesystemService::ListDir, json{{"path", home_}, {"depth", -1}}),
             Errc::kInvalidArgument);
  ExpectCode(Call(&FilesystemService::CreateWatcher, json{{"path", home_}, {"recursive", "yes"}}),
             Errc::kInvalidArgument);
  ExpectCode(service_->GetWatcherEvents(Ctx(), json{{"watcherId", json::array()}}),
             Errc::kInvalidArgument);
  ExpectCode(service_->Move(Ctx(), json{{"source", json::object()}, {"destination", "x"}}),
             Errc::kInvalidArgument);
}

TEST_F(FilesystemServiceTest, NulBytesInPathsAreInvalidArgument) {
  std::string bad("/tmp/a\0b", 8);
  ExpectCode(service_->Stat(Ctx(), json{{"path", bad}}), Errc::kInvalidArgument);
  ExpectCode(Call(&FilesystemService::Remove, json{{"path", bad}}), Errc::kInvalidArgument);
  ExpectCode(service_->MakeDir(Ctx(), json{{"path", bad}}), Errc::kInvalidArgument);
}

TEST_F(FilesystemServiceTest, UnknownBasicAuthUserIsUnauthenticated) {
  head_.headers.set("authorization", "Basic " + Base64Encode("ghost:"));
  ExpectCode(service_->Stat(Ctx(), json{{"path", home_}}), Errc::kUnauthenticated);
}

TEST_F(FilesystemServiceTest, ListDirDefaultsToOneLevelAndAcceptsStringDepth) {
  fs::create_directories(home_ + "/d/e");
  auto one = Call(&FilesystemService::ListDir, json{{"path", "~"}});
  ASSERT_TRUE(one);
  ASSERT_EQ((*one)["entries"].size(), 1u);
  EXPECT_EQ((*one)["entries"][0]["type"], "FILE_TYPE_DIRECTORY");
  auto two = Call(&FilesystemService::ListDir, json{{"path", "~"}, {"depth", "2"}});
  ASSERT_TRUE(two);
  EXPECT_EQ((*two)["entries"].size(), 2u);
}

TEST_F(FilesystemServiceTest, ListAndRemoveOfTreesLargerThanOneStep) {
  const size_t n = 2 * FilesystemService::kStepBudget + 10;
  fs::create_directory(home_ + "/many");
  for (size_t i = 0; i < n; ++i) WriteFile(home_ + "/many/f" + std::to_string(i), "");
  auto listed = Call(&FilesystemService::ListDir, json{{"path", "many"}});
  ASSERT_TRUE(listed) << listed.error().message();
  EXPECT_EQ((*listed)["entries"].size(), n);
  auto removed = Call(&FilesystemService::Remove, json{{"path", "many"}});
  ASSERT_TRUE(removed) << removed.error().message();
  EXPECT_FALSE(fs::exists(home_ + "/many"));
}

TEST_F(FilesystemServiceTest, MakeDirThenAlreadyExists) {
  auto r = service_->MakeDir(Ctx(), json{{"path", "a/b"}});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ((*r)["entry"]["path"], home_ + "/a/b");
  EXPECT_EQ((*r)["entry"]["type"], "FILE_TYPE_DIRECTORY");
  ExpectCode(service_->MakeDir(Ctx(), json{{"path", "a/b"}}), Errc::kAlreadyExists);
  WriteFile(home_ + "/f", "x");
  ExpectCode(service_->MakeDir(Ctx(), json{{"path", "f"}}), Errc::kInvalidArgument);
}

TEST_F(FilesystemServiceTest, MoveReturnsDestinationEntry) {
  WriteFile(home_ + "/src.txt", "abc");
  auto r = service_->Move(Ctx(), json{{"source", "src.txt"}, {"destination", "x/dst.txt"}});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ((*r)["entry"]["name"], "dst.txt");
  EXPECT_EQ((*r)["entry"]["path"], home_ + "/x/dst.txt");
  ExpectCode(service_->Move(Ctx(), json{{"source", "src.txt"}, {"destination", "y"}}),
             Errc::kNotFound);
  ExpectCode(service_->Move(Ctx(), json{{"source", ""}, {"destination", "y"}}),
             Errc::kInvalidArgument);
  ExpectCode(service_->Move(Ctx(), json{{"source", "x/dst.txt"}}), Errc::kInvalidArgument);
}

TEST_F(FilesystemServiceTest, RemoveIsRecursiveAndToleratesMissing) {
  fs::create_directories(home_ + "/r/s");
  WriteFile(home_ + "/r/s/t", "x");
  auto r = Call(&FilesystemService::Remove, json{{"path", "r"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, json::object());
  EXPECT_FALSE(fs::exists(home_ + "/r"));
  EXPECT_TRUE(Call(&FilesystemService::Remove, json{{"path", "r"}}));
  ExpectCode(Call(&FilesystemService::Remove, json::object()), Errc::kInvalidArgument);
  ExpectCode(Call(&FilesystemService::Remove, json{{"path", "/"}}), Errc::kInvalidArgument);
}

TEST_F(FilesystemServiceTest, WatcherLifecycle) {
  auto created = Call(&FilesystemService::CreateWatcher, json{{"path", home_}, {"recursive", true}, {"includeEntry", true}});
  ASSERT_TRUE(created) << created.error().message();
  std::string id = (*created)["watcherId"];
  ASSERT_FALSE(id.empty());
  fs::create_directory(home_ + "/sub");
  WriteFile(home_ + "/sub/f.txt", "hello");
  json events = json::array();
  auto has_file = [&] {
    for (const json& e : events) {
      if (e["name"] == "sub/f.txt") return true;
    }
    return false;
  };
  for (int i = 0; i < 5 && !has_file(); ++i) {
    for (json& e : PollEvents(id)) events.push_back(std::move(e));
  }
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0]["name"], "sub");
  EXPECT_EQ(events[0]["type"], "EVENT_TYPE_CREATE");
  EXPECT_EQ(events[0]["entry"]["type"], "FILE_TYPE_DIRECTORY");
  EXPECT_TRUE(has_file());
  // Drained: a poll without new changes is empty.
  auto again = service_->GetWatcherEvents(Ctx(), json{{"watcherId", id}});
  ASSERT_TRUE(again);
  EXPECT_TRUE((*again)["events"].empty());
  auto removed = service_->RemoveWatcher(Ctx(), json{{"watcherId", id}});
  ASSERT_TRUE(removed);
  EXPECT_EQ(*removed, json::object());
  ExpectCode(service_->GetWatcherEvents(Ctx(), json{{"watcherId", id}}), Errc::kNotFound);
  ExpectCode(service_->RemoveWatcher(Ctx(), json{{"watcherId", id}}), Errc::kNotFound);
}

TEST_F(FilesystemServiceTest, WatchOfMissingPathOrFileIsRejected) {
  ExpectCode(Call(&FilesystemService::CreateWatcher, json{{"path", "nope"}}), Errc::kNotFound);
  WriteFile(home_ + "/f", "x");
  ExpectCode(Call(&FilesystemService::CreateWatcher, json{{"path", "f"}}), Errc::kInvalidArgument);
  ExpectCode(service_->GetWatcherEvents(Ctx(), json{{"watcherId", "nope"}}), Errc::kNotFound);
}

TEST_F(FilesystemServiceTest, DirWatcherFailsWhenTooManyEventsPileUp) {
  auto w = DirWatcher::Start(io_, home_, false, /*max_pending=*/3);
  ASSERT_TRUE(w);
  for (int i = 0; i < 10; ++i) WriteFile(home_ + "/f" + std::to_string(i), "x");
  io_.run_for(std::chrono::milliseconds(100));
  ASSERT_TRUE((*w)->error());
  EXPECT_EQ((*w)->error()->code(), Errc::kResourceExhausted);
  (*w)->Stop();
}

TEST_F(FilesystemServiceTest, DirWatcherCollapsesRepeatedWrites) {
  WriteFile(home_ + "/big", "");
  auto w = DirWatcher::Start(io_, home_, false, 100);
  ASSERT_TRUE(w);
  {
    std::ofstream out(home_ + "/big", std::ios::app);
    for (int i = 0; i < 50; ++i) {
      out << std::string(100, 'x');
      out.flush();
    }
  }
  io_.run_for(std::chrono::milliseconds(100));
  auto events = (*w)->Take();
  int writes = 0;
  for (const auto& e : events) writes += (e.ops & sys::kWatchWrite) ? 1 : 0;
  EXPECT_EQ(writes, 1);
  (*w)->Stop();
}

// WatchDir over real HTTP: the agent-side stream framing the SDK reads.
class WatchDirStreamTest : public FilesystemServiceTest {
 protected:
  void SetUp() override {
    FilesystemServiceTest::SetUp();
    service_->Register(router_);
    server_ = std::make_unique<http::Server>(io_, router_, http::ServerOptions{});
    ASSERT_TRUE(server_->Listen("127.0.0.1", 0));
    server_->Start();
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    io_.stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    FilesystemServiceTest::TearDown();
  }

  // Posts a WatchDir call and returns the decoded frames (flags, JSON) of the response.
  std::vector<std::pair<int, json>> Watch(const json& req, const std::string& timeout_ms,
                                          const std::string& keepalive,
                                          const std::function<void()>& during) {
    net::io_context client_io;
    beast::tcp_stream stream(client_io);
    stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), server_->port()));
    bhttp::request<bhttp::string_body> httpreq(bhttp::verb::post,
                                               "/filesystem.Filesystem/WatchDir", 11);
    httpreq.set(bhttp::field::host, "localhost");
    httpreq.set(bhttp::field::content_type, "application/connect+json");
    httpreq.set("Connect-Timeout-Ms", timeout_ms);
    httpreq.set("Keepalive-Ping-Interval", keepalive);
    httpreq.body() = http::connect::EncodeEnvelope(0, req.dump());
    httpreq.prepare_payload();
    bhttp::write(stream, httpreq);
    std::thread side([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      during();
    });
    beast::flat_buffer buf;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(stream, buf, res);
    side.join();
    EXPECT_EQ(res.result_int(), 200u);
    std::vector<std::pair<int, json>> frames;
    std::string_view body = res.body();
    while (body.size() >= 5) {
      uint32_t len = (uint8_t(body[1]) << 24) | (uint8_t(body[2]) << 16) |
                     (uint8_t(body[3]) << 8) | uint8_t(body[4]);
      frames.emplace_back(uint8_t(body[0]), json::parse(body.substr(5, len)));
      body.remove_prefix(5 + len);
    }
    return frames;
  }

  http::Router router_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

TEST_F(WatchDirStreamTest, StartThenEventsThenKeepaliveThenDeadline) {
  fs::create_directory(home_ + "/sub");
  auto frames = Watch(json{{"path", home_}, {"recursive", true}}, "1400", "1",
                      [&] { WriteFile(home_ + "/sub/n.txt", "x"); });
  ASSERT_GE(frames.size(), 4u);
  EXPECT_EQ(frames.front().first, 0);
  EXPECT_EQ(frames.front().second, json::parse(R"({"start":{}})"));
  EXPECT_EQ(frames[1].second, json::parse(R"({"filesystem":{"name":"sub/n.txt","type":"EVENT_TYPE_CREATE"}})"));
  bool keepalive = false;
  for (const auto& [flags, j] : frames) keepalive |= j.contains("keepalive");
  EXPECT_TRUE(keepalive);
  EXPECT_EQ(frames.back().first, http::connect::kFlagEndStream);
  EXPECT_EQ(frames.back().second["error"]["code"], "deadline_exceeded");
}

TEST_F(WatchDirStreamTest, MissingPathEndsStreamWithNotFound) {
  auto frames = Watch(json{{"path", home_ + "/nope"}}, "1000", "1", [] {});
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].first, http::connect::kFlagEndStream);
  EXPECT_EQ(frames[0].second["error"]["code"], "not_found");
}

}  // namespace
}  // namespace kiln::envd
