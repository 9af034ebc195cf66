#include "envd/files/files_routes.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/inotify.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <gtest/gtest.h>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "envd/agent.h"
#include "envd/files/gzip_codec.h"
#include "envd/files/signature.h"

namespace kiln::envd {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace fs = std::filesystem;
using boost::system::error_code;
using http::Verb;
using nlohmann::json;
using tcp = net::ip::tcp;
using Headers = std::vector<std::pair<std::string, std::string>>;
using HttpResponse = bhttp::response<bhttp::string_body>;

constexpr std::string_view kBoundary = "----formdata-undici-0123456789";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, std::string_view data) {
  std::ofstream(path, std::ios::binary) << data;
}

std::string Gzip(std::string_view data) {
  GzipEncoder enc;
  std::string out = enc.Write(data).value();
  return out + enc.Finish().value();
}

std::string Gunzip(std::string_view data) {
  std::string out;
  GzipDecoder dec([&](std::string_view d) {
    out += d;
    return Status();
  });
  EXPECT_TRUE(dec.Write(data));
  EXPECT_TRUE(dec.Finish());
  return out;
}

std::string RandomBytes(size_t n) {
  std::mt19937 rng(3);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::string Multipart(const std::vector<std::pair<std::string, std::string>>& files,
                      std::string_view field = "file") {
  std::string body;
  for (const auto& [name, data] : files) {
    body += "--" + std::string(kBoundary) + "\r\n";
    body += "Content-Disposition: form-data; name=\"" + std::string(field) + "\"; filename=\"" +
            name + "\"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + "\r\n";
  }
  return body + "--" + std::string(kBoundary) + "--\r\n";
}

std::string MultipartType() { return "multipart/form-data; boundary=" + std::string(kBoundary); }

// The whole agent served on 127.0.0.1:0 by a background io_context thread, with accounts
// from a temporary root: "user" (the test's own uid, home <root>/home/user) and "root".
class FilesRoutesTest : public testing::Test {
 protected:
  virtual std::optional<std::string> Token() { return std::nullopt; }

  void SetUp() override {
    char tmpl[] = "/tmp/kiln-files-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    home_ = root_ + "/home/user";
    fs::create_directories(root_ + "/etc");
    fs::create_directories(home_);
    std::string uid = std::to_string(getuid()), gid = std::to_string(getgid());
    std::ofstream(root_ + "/etc/passwd") << "root:x:0:0:root:/root:/bin/bash\n"
                                         << "user:x:" << uid << ":" << gid << "::" << home_
                                         << ":/bin/bash\n";
    std::ofstream(root_ + "/etc/group") << "root:x:0:\nuser:x:" << gid << ":\n";
    AgentState initial;
    initial.users = sys::UserDb(root_);
    initial.default_user = "user";
    initial.access_token = Token();
    agent_ = std::make_unique<Agent>(io_, std::move(initial));
    server_ = std::make_unique<http::Server>(io_, agent_->router(), http::ServerOptions{});
    Status st = server_->Listen("127.0.0.1", 0);
    ASSERT_TRUE(st) << st.error().message();
    server_->Start();
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    io_.stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    agent_.reset();
    fs::remove_all(root_);
  }

  tcp::socket Connect(net::io_context& io) {
    tcp::socket s(io);
    s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server_->port()));
    timeval tv{5, 0};
    setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return s;
  }

  // One request on a fresh connection; reads time out after 5 s.
  HttpResponse Call(Verb method, std::string target, std::string body = {},
                    const Headers& headers = {}) {
    net::io_context io;
    tcp::socket s = Connect(io);
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = std::move(body);
    req.prepare_payload();
    error_code ec;
    bhttp::write(s, req, ec);
    EXPECT_FALSE(ec) << ec.message();
    return ReadResponse(s);
  }

  static HttpResponse ReadResponse(tcp::socket& s) {
    beast::flat_buffer buf;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(1ull << 30);
    error_code ec;
    bhttp::read(s, buf, parser, ec);
    EXPECT_FALSE(ec) << ec.message();
    return parser.release();
  }

  HttpResponse Get(const std::string& query, const Headers& headers = {}) {
    return Call(Verb::get, "/files?" + query, {}, headers);
  }

  HttpResponse PostOctet(const std::string& query, std::string body, Headers headers = {}) {
    headers.emplace_back("Content-Type", "application/octet-stream");
    return Call(Verb::post, "/files?" + query, std::move(body), headers);
  }

  HttpResponse PostMultipart(const std::string& query, std::string body, Headers headers = {}) {
    headers.emplace_back("Content-Type", MultipartType());
    return Call(Verb::post, "/files" + (query.empty() ? "" : "?" + query), std::move(body),
                headers);
  }

  std::vector<std::string> DirEntries(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string root_;
  std::string home_;
  net::io_context io_{1};
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

std::string H(const HttpResponse& r, bhttp::field f) {
  auto it = r.find(f);
  return it == r.end() ? std::string() : std::string(it->value());
}

TEST_F(FilesRoutesTest, DownloadSendsBytesWithHeaders) {
  WriteFile(home_ + "/hello.txt", "hello world");
  auto res = Get("path=hello.txt");
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_EQ(res.body(), "hello world");
  EXPECT_EQ(H(res, bhttp::field::content_length), "11");
  EXPECT_EQ(H(res, bhttp::field::content_type), "text/plain; charset=utf-8");
  EXPECT_EQ(H(res, bhttp::field::content_disposition), "inline; filename=hello.txt");
  EXPECT_EQ(H(res, bhttp::field::content_encoding), "");
}

TEST_F(FilesRoutesTest, DownloadAbsolutePathAndUnknownType) {
  WriteFile(root_ + "/data", std::string("\0\1\2", 3));
  auto res = Get("path=" + http::PercentEncode(root_ + "/data") + "&username=root");
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_EQ(res.body(), std::string("\0\1\2", 3));
  EXPECT_EQ(H(res, bhttp::field::content_type), "application/octet-stream");
}

TEST_F(FilesRoutesTest, EmptyFileHasContentLengthZero) {
  WriteFile(home_ + "/empty.txt", "");
  auto res = Get("path=empty.txt", {{"Accept-Encoding", "gzip"}});
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_EQ(H(res, bhttp::field::content_length), "0");
  EXPECT_TRUE(res.body().empty());
}

TEST_F(FilesRoutesTest, LargeFileIsStreamedWhole) {
  std::string data = RandomBytes(3 * 1024 * 1024 + 17);
  WriteFile(home_ + "/big.bin", data);
  auto res = Get("path=big.bin");
  ASSERT_EQ(res.result_int(), 200);
  EXPECT_EQ(H(res, bhttp::field::content_length), std::to_string(data.size()));
  EXPECT_TRUE(res.body() == data);
}

TEST_F(FilesRoutesTest, PseudoFileWithZeroSizeIsReadToTheEnd) {
  if (access("/proc/self/status", R_OK) != 0) GTEST_SKIP() << "no /proc";
  auto res = Get("path=/proc/self/status");
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_NE(res.body().find("Name:"), std::string::npos);
}

TEST_F(FilesRoutesTest, MissingFileIs404) {
  auto res = Get("path=nope.txt");
  EXPECT_EQ(res.result_int(), 404);
  EXPECT_EQ(res.body(),
            R"({"code":404,"message":"path ')" + home_ + R"(/nope.txt' does not exist"})");
}

TEST_F(FilesRoutesTest, DirectoryIs400) {
  auto res = Get("path=" + http::PercentEncode(home_));
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_EQ(json::parse(res.body())["code"], 400);
}

TEST_F(FilesRoutesTest, UnknownUserIs401) {
  WriteFile(home_ + "/a", "x");
  auto res = Get("path=a&username=nobody");
  EXPECT_EQ(res.result_int(), 401);
  EXPECT_EQ(json::parse(res.body())["code"], 401);
  res = PostOctet("path=a&username=nobody", "y");
  EXPECT_EQ(res.result_int(), 401);
  EXPECT_EQ(ReadFile(home_ + "/a"), "x");
}

TEST_F(FilesRoutesTest, NulInPathIs400) {
  EXPECT_EQ(Get("path=a%00b").result_int(), 400);
  EXPECT_EQ(PostOctet("path=a%00b", "x").result_int(), 400);
}

TEST_F(FilesRoutesTest, RangeRequests) {
  WriteFile(home_ + "/r.txt", "0123456789");
  auto res = Get("path=r.txt", {{"Range", "bytes=2-4"}});
  EXPECT_EQ(res.result_int(), 206);
  EXPECT_EQ(res.body(), "234");
  EXPECT_EQ(H(res, bhttp::field::content_range), "bytes 2-4/10");
  EXPECT_EQ(H(res, bhttp::field::content_length), "3");
  res = Get("path=r.txt", {{"Range", "bytes=-3"}});
  EXPECT_EQ(res.result_int(), 206);
  EXPECT_EQ(res.body(), "789");
  res = Get("path=r.txt", {{"Range", "bytes=7-"}, {"Accept-Encoding", "gzip"}});
  EXPECT_EQ(res.result_int(), 206);
  EXPECT_EQ(res.body(), "789");
  EXPECT_EQ(H(res, bhttp::field::content_encoding), "");
  res = Get("path=r.txt", {{"Range", "bytes=10-"}});
  EXPECT_EQ(res.result_int(), 416);
  EXPECT_EQ(H(res, bhttp::field::content_range), "bytes */10");
}

TEST_F(FilesRoutesTest, ConditionalGetIs304) {
  WriteFile(home_ + "/c.txt", "cache me");
  auto first = Get("path=c.txt");
  std::string etag = H(first, bhttp::field::etag);
  ASSERT_FALSE(etag.empty());
  auto res = Get("path=c.txt", {{"If-None-Match", etag}});
  EXPECT_EQ(res.result_int(), 304);
  EXPECT_TRUE(res.body().empty());
  res = Get("path=c.txt", {{"If-Modified-Since", H(first, bhttp::field::last_modified)}});
  EXPECT_EQ(res.result_int(), 304);
}

TEST_F(FilesRoutesTest, GzipDownloadOfText) {
  std::string text;
  for (int i = 0; i < 50000; ++i) text += "line " + std::to_string(i) + "\n";
  WriteFile(home_ + "/log.txt", text);
  auto res = Get("path=log.txt", {{"Accept-Encoding", "gzip"}});
  ASSERT_EQ(res.result_int(), 200);
  EXPECT_EQ(H(res, bhttp::field::content_encoding), "gzip");
  EXPECT_LT(res.body().size(), text.size() / 3);
  EXPECT_EQ(Gunzip(res.body()), text);
}

TEST_F(FilesRoutesTest, IncompressibleFileIsSentPlainEvenWhenGzipIsAccepted) {
  std::string data = RandomBytes(600000);
  WriteFile(home_ + "/noise", data);
  auto res = Get("path=noise", {{"Accept-Encoding", "gzip, deflate"}});
  ASSERT_EQ(res.result_int(), 200);
  EXPECT_EQ(H(res, bhttp::field::content_encoding), "");
  EXPECT_EQ(H(res, bhttp::field::content_length), std::to_string(data.size()));
  EXPECT_TRUE(res.body() == data);
}

TEST_F(FilesRoutesTest, NoAcceptableEncodingIs406) {
  WriteFile(home_ + "/a.txt", "abc");
  EXPECT_EQ(Get("path=a.txt", {{"Accept-Encoding", "br;q=1, *;q=0"}}).result_int(), 406);
}

TEST_F(FilesRoutesTest, OctetUploadCreatesParentsAndReportsTheFile) {
  auto res = PostOctet("path=dir/sub/new.txt", "content");
  ASSERT_EQ(res.result_int(), 200) << res.body();
  json j = json::parse(res.body());
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["name"], "new.txt");
  EXPECT_EQ(j[0]["type"], "file");
  EXPECT_EQ(j[0]["path"], home_ + "/dir/sub/new.txt");
  EXPECT_FALSE(j[0].contains("metadata"));
  EXPECT_EQ(ReadFile(home_ + "/dir/sub/new.txt"), "content");
  struct stat st {};
  ASSERT_EQ(stat((home_ + "/dir/sub/new.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_EQ(st.st_uid, getuid());
  EXPECT_EQ(DirEntries(home_ + "/dir/sub"), std::vector<std::string>{"new.txt"});
}

TEST_F(FilesRoutesTest, OctetUploadOverwritesAndKeepsMode) {
  WriteFile(home_ + "/run.sh", "old contents that are longer");
  chmod((home_ + "/run.sh").c_str(), 0755);
  auto res = PostOctet("path=run.sh", "new");
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_EQ(ReadFile(home_ + "/run.sh"), "new");
  struct stat st {};
  ASSERT_EQ(stat((home_ + "/run.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
}

TEST_F(FilesRoutesTest, OctetUploadThroughSymlinkWritesTheTarget) {
  WriteFile(home_ + "/real.txt", "old");
  fs::create_symlink(home_ + "/real.txt", home_ + "/link.txt");
  auto res = PostOctet("path=link.txt", "via link");
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_TRUE(fs::is_symlink(home_ + "/link.txt"));
  EXPECT_EQ(ReadFile(home_ + "/real.txt"), "via link");
}

TEST_F(FilesRoutesTest, EmptyOctetUpload) {
  auto res = PostOctet("path=zero", "");
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_TRUE(fs::exists(home_ + "/zero"));
  EXPECT_EQ(fs::file_size(home_ + "/zero"), 0u);
}

TEST_F(FilesRoutesTest, GzipOctetUpload) {
  std::string data = RandomBytes(200000) + std::string(100000, 'a');
  auto res = PostOctet("path=gz.bin", Gzip(data), {{"Content-Encoding", "gzip"}});
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_TRUE(ReadFile(home_ + "/gz.bin") == data);
}

TEST_F(FilesRoutesTest, CorruptGzipUploadLeavesNothing) {
  std::string gz = Gzip(RandomBytes(100000));
  gz.resize(gz.size() - 10);
  auto res = PostOctet("path=bad.bin", gz, {{"Content-Encoding", "gzip"}});
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_FALSE(fs::exists(home_ + "/bad.bin"));
  EXPECT_EQ(DirEntries(home_), std::vector<std::string>{});
}

TEST_F(FilesRoutesTest, OctetUploadNeedsPath) {
  auto res = PostOctet("", "x");
  EXPECT_EQ(res.result_int(), 400);
}

TEST_F(FilesRoutesTest, UnsupportedContentTypeOrEncodingIs400) {
  EXPECT_EQ(Call(Verb::post, "/files?path=a", "x", {{"Content-Type", "text/plain"}}).result_int(),
            400);
  EXPECT_EQ(Call(Verb::post, "/files?path=a", "x").result_int(), 400);
  EXPECT_EQ(PostOctet("path=a", "x", {{"Content-Encoding", "br"}}).result_int(), 400);
  EXPECT_FALSE(fs::exists(home_ + "/a"));
}

TEST_F(FilesRoutesTest, UploadOntoDirectoryIs400) {
  fs::create_directories(home_ + "/d");
  EXPECT_EQ(PostOctet("path=d", "x").result_int(), 400);
  EXPECT_EQ(PostMultipart("", Multipart({{home_ + "/d", "x"}})).result_int(), 400);
  // A parent that is a file.
  WriteFile(home_ + "/f", "x");
  EXPECT_EQ(PostOctet("path=f/child", "x").result_int(), 400);
}

TEST_F(FilesRoutesTest, MultipartWithFullPathFilenames) {
  std::string other = root_ + "/srv/x y.txt";
  auto res = PostMultipart("", Multipart({{other, "first"}, {"rel/b.bin", "second"}}));
  ASSERT_EQ(res.result_int(), 200) << res.body();
  json j = json::parse(res.body());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["path"], other);
  EXPECT_EQ(j[0]["name"], "x y.txt");
  EXPECT_EQ(j[1]["path"], home_ + "/rel/b.bin");
  EXPECT_EQ(ReadFile(other), "first");
  EXPECT_EQ(ReadFile(home_ + "/rel/b.bin"), "second");
}

TEST_F(FilesRoutesTest, MultipartWithPathQueryUsesIt) {
  auto res = PostMultipart("path=target.txt", Multipart({{"ignored-name", "data"}}));
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_EQ(json::parse(res.body())[0]["path"], home_ + "/target.txt");
  EXPECT_EQ(ReadFile(home_ + "/target.txt"), "data");
  EXPECT_FALSE(fs::exists(home_ + "/ignored-name"));
}

TEST_F(FilesRoutesTest, MultipartIgnoresOtherFields) {
  std::string body = "--" + std::string(kBoundary) +
                     "\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n" +
                     Multipart({{"f.txt", "file data"}});
  auto res = PostMultipart("", body);
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_EQ(json::parse(res.body()).size(), 1u);
  EXPECT_EQ(ReadFile(home_ + "/f.txt"), "file data");
}

TEST_F(FilesRoutesTest, MultipartDuplicateDestinationIs400) {
  // Parts are put in place as they complete (as upstream does): the first one is written.
  auto res = PostMultipart("", Multipart({{"same.txt", "1"}, {home_ + "/same.txt", "2"}}));
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_EQ(ReadFile(home_ + "/same.txt"), "1");
  res = PostMultipart("path=p.txt", Multipart({{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_EQ(ReadFile(home_ + "/p.txt"), "1");
  EXPECT_EQ(DirEntries(home_), (std::vector<std::string>{"p.txt", "same.txt"}));
}

TEST_F(FilesRoutesTest, CutOffUploadKeepsTheOldContent) {
  WriteFile(home_ + "/keep.txt", "old content");
  std::string body = Multipart({{"keep.txt", "new content that never completes"}});
  body.resize(body.size() - 60);
  EXPECT_EQ(PostMultipart("", body).result_int(), 400);
  EXPECT_EQ(ReadFile(home_ + "/keep.txt"), "old content");
  std::string gz = Gzip("new");
  EXPECT_EQ(PostOctet("path=keep.txt", gz.substr(0, gz.size() - 3), {{"Content-Encoding", "gzip"}})
                .result_int(),
            400);
  EXPECT_EQ(ReadFile(home_ + "/keep.txt"), "old content");
  EXPECT_EQ(DirEntries(home_), std::vector<std::string>{"keep.txt"});
}

// inotify events on `dir` (name -> mask bits) after `action`.
std::map<std::string, uint32_t> WatchEvents(const std::string& dir,
                                            const std::function<void()>& action) {
  int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  EXPECT_GE(in, 0);
  EXPECT_GE(inotify_add_watch(in, dir.c_str(), IN_ALL_EVENTS), 0);
  action();
  std::map<std::string, uint32_t> events;
  alignas(inotify_event) char buf[8192];
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* e = reinterpret_cast<inotify_event*>(p);
      if (e->len > 0) events[e->name] |= e->mask;
      p += sizeof(inotify_event) + e->len;
    }
  }
  close(in);
  return events;
}

TEST_F(FilesRoutesTest, WatchersSeeCreateAndWriteOnTheFileItself) {
  auto events = WatchEvents(home_, [&] {
    ASSERT_EQ(PostMultipart("", Multipart({{"w.txt", "one"}})).result_int(), 200);
  });
  ASSERT_TRUE(events.contains("w.txt"));
  EXPECT_TRUE(events["w.txt"] & IN_CREATE);
  EXPECT_TRUE(events["w.txt"] & IN_MODIFY);
  for (const auto& [name, mask] : events) {
    // An unprivileged agent stages in the directory itself; inotify names that "#<inode>".
    EXPECT_TRUE(name == "w.txt" || name.starts_with("#")) << name;
  }
  // An overwrite is a write to the same file, not a new one.
  events = WatchEvents(home_, [&] {
    ASSERT_EQ(PostOctet("path=w.txt", "two").result_int(), 200);
  });
  EXPECT_TRUE(events["w.txt"] & IN_MODIFY);
  EXPECT_FALSE(events["w.txt"] & (IN_CREATE | IN_MOVED_TO));
  EXPECT_EQ(ReadFile(home_ + "/w.txt"), "two");
}

TEST_F(FilesRoutesTest, MalformedMultipartIs400AndLeavesNothing) {
  std::string body = Multipart({{"m.txt", "data"}});
  body.resize(body.size() - 10);  // no closing boundary
  auto res = PostMultipart("", body);
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_EQ(json::parse(res.body())["code"], 400);
  EXPECT_EQ(DirEntries(home_), std::vector<std::string>{});
  EXPECT_EQ(PostMultipart("", "garbage").result_int(), 400);
  EXPECT_EQ(Call(Verb::post, "/files", Multipart({{"m", "d"}}),
                 {{"Content-Type", "multipart/form-data"}})
                .result_int(),
            400);
  EXPECT_EQ(PostMultipart("", Multipart({{"x", "d"}}, "other")).result_int(), 400);
}

TEST_F(FilesRoutesTest, ChunkedMultipartUploadInSmallPieces) {
  std::string data = RandomBytes(100000);
  std::string body = Multipart({{"chunked.bin", data}});
  net::io_context io;
  tcp::socket s = Connect(io);
  std::string head = "POST /files HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     "Content-Type: " + MultipartType() + "\r\n\r\n";
  net::write(s, net::buffer(head));
  for (size_t i = 0; i < body.size(); i += 997) {
    std::string piece = body.substr(i, 997);
    std::ostringstream chunk;
    chunk << std::hex << piece.size() << "\r\n" << piece << "\r\n";
    net::write(s, net::buffer(chunk.str()));
  }
  net::write(s, net::buffer(std::string("0\r\n\r\n")));
  auto res = ReadResponse(s);
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_TRUE(ReadFile(home_ + "/chunked.bin") == data);
}

bool XattrsWork(const std::string& dir) {
  std::string probe = dir + "/.xattr-probe";
  WriteFile(probe, "");
  bool ok = setxattr(probe.c_str(), "user.probe", "1", 1, 0) == 0;
  unlink(probe.c_str());
  return ok;
}

TEST_F(FilesRoutesTest, MetadataHeadersBecomeXattrsAndAreReplaced) {
  if (!XattrsWork(home_)) GTEST_SKIP() << "no user xattrs here";
  auto res = PostOctet("path=m.txt", "x", {{"X-Metadata-Owner", "Team A"}, {"X-Metadata-k", "v"}});
  ASSERT_EQ(res.result_int(), 200) << res.body();
  json j = json::parse(res.body());
  EXPECT_EQ(j[0]["metadata"], json({{"owner", "Team A"}, {"k", "v"}}));
  char buf[64];
  ssize_t n = getxattr((home_ + "/m.txt").c_str(), "user.e2b.owner", buf, sizeof buf);
  ASSERT_EQ(n, 6);
  EXPECT_EQ(std::string(buf, 6), "Team A");
  // An upload without metadata clears it.
  res = PostMultipart("", Multipart({{"m.txt", "y"}}));
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_FALSE(json::parse(res.body())[0].contains("metadata"));
  EXPECT_LT(getxattr((home_ + "/m.txt").c_str(), "user.e2b.owner", buf, sizeof buf), 0);
}

TEST_F(FilesRoutesTest, BadMetadataIs400) {
  auto res = PostOctet("path=m.txt", "x", {{"X-Metadata-k", "caf\xc3\xa9"}});
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_FALSE(fs::exists(home_ + "/m.txt"));
  res = PostOctet("path=m.txt", "x", {{"X-Metadata-" + std::string(300, 'k'), "v"}});
  EXPECT_EQ(res.result_int(), 400);
}

TEST_F(FilesRoutesTest, UploadThenDownloadRoundTrip) {
  std::string data = RandomBytes(700000);
  ASSERT_EQ(PostMultipart("path=rt.bin", Multipart({{"rt.bin", data}})).result_int(), 200);
  auto res = Get("path=rt.bin");
  ASSERT_EQ(res.result_int(), 200);
  EXPECT_TRUE(res.body() == data);
}

// With an access token configured.
class FilesRoutesTokenTest : public FilesRoutesTest {
 protected:
  std::optional<std::string> Token() override { return std::string("tok"); }
};

TEST_F(FilesRoutesTokenTest, WithoutHeaderOrSignatureIs401) {
  WriteFile(home_ + "/s.txt", "secret");
  auto res = Get("path=s.txt");
  EXPECT_EQ(res.result_int(), 401);
  EXPECT_EQ(res.body(), R"({"code":401,"message":"missing signature query parameter"})");
  res = PostOctet("path=s.txt", "overwrite");
  EXPECT_EQ(res.result_int(), 401);
  EXPECT_EQ(ReadFile(home_ + "/s.txt"), "secret");
}

TEST_F(FilesRoutesTokenTest, AccessTokenHeader) {
  WriteFile(home_ + "/s.txt", "secret");
  EXPECT_EQ(Get("path=s.txt", {{"X-Access-Token", "tok"}}).result_int(), 200);
  EXPECT_EQ(Get("path=s.txt", {{"X-Access-Token", "nope"}}).result_int(), 401);
}

TEST_F(FilesRoutesTokenTest, ValidSignature) {
  WriteFile(home_ + "/s.txt", "secret");
  std::string sig = FileUrlSignature("s.txt", FileOp::kRead, "", "tok");
  auto res = Get("path=s.txt&signature=" + http::PercentEncode(sig));
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_EQ(res.body(), "secret");
  // A read signature does not allow writing.
  res = PostOctet("path=s.txt&signature=" + http::PercentEncode(sig), "x");
  EXPECT_EQ(res.result_int(), 401);
  EXPECT_EQ(res.body(), R"({"code":401,"message":"invalid signature"})");
  std::string wsig = FileUrlSignature("s.txt", FileOp::kWrite, "user", "tok");
  res = PostOctet("path=s.txt&username=user&signature=" + http::PercentEncode(wsig), "x");
  EXPECT_EQ(res.result_int(), 200) << res.body();
}

TEST_F(FilesRoutesTokenTest, ExpiredSignatureHasTheExactBody) {
  WriteFile(home_ + "/s.txt", "secret");
  std::string past = std::to_string(time(nullptr) - 10);
  std::string sig = FileUrlSignature("s.txt", FileOp::kRead, "", "tok", past);
  auto res = Get("path=s.txt&signature=" + http::PercentEncode(sig) +
                 "&signature_expiration=" + past);
  EXPECT_EQ(res.result_int(), 401);
  EXPECT_EQ(res.body(), R"({"code":401,"message":"signature is already expired"})");
  std::string future = std::to_string(time(nullptr) + 100);
  sig = FileUrlSignature("s.txt", FileOp::kRead, "", "tok", future);
  res = Get("path=s.txt&signature=" + http::PercentEncode(sig) +
            "&signature_expiration=" + future);
  EXPECT_EQ(res.result_int(), 200) << res.body();
}

}  // namespace
}  // namespace kiln::envd
