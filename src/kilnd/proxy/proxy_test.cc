#include "kilnd/proxy/proxy.h"

#include <gtest/gtest.h>

namespace kiln::kilnd {
namespace {

http::RequestHead Head(std::initializer_list<std::pair<const char*, const char*>> headers) {
  http::RequestHead h;
  for (const auto& [k, v] : headers) h.headers.set(k, v);
  return h;
}

TEST(RouteRequestTest, HeadersRouteToTheSandbox) {
  auto r = RouteRequest(Head({{"E2b-Sandbox-Id", "iabc123"}, {"E2b-Sandbox-Port", "49983"}, {"Host", "127.0.0.1:3000"}}));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->sandbox_id, "iabc123");
  EXPECT_EQ((*r)->port, 49983);
}

TEST(RouteRequestTest, BadHeadersAreASandboxRequestWithAnError) {
  for (auto head : {Head({{"E2b-Sandbox-Id", "iabc"}}), Head({{"E2b-Sandbox-Port", "80"}}),
                    Head({{"E2b-Sandbox-Id", "i-abc"}, {"E2b-Sandbox-Port", "80"}}),
                    Head({{"E2b-Sandbox-Id", "IABC"}, {"E2b-Sandbox-Port", "80"}}),
                    Head({{"E2b-Sandbox-Id", "iabc"}, {"E2b-Sandbox-Port", "0"}}),
                    Head({{"E2b-Sandbox-Id", "iabc"}, {"E2b-Sandbox-Port", "65536"}}),
                    Head({{"E2b-Sandbox-Id", "iabc"}, {"E2b-Sandbox-Port", "80x"}}),
                    Head({{"E2b-Sandbox-Id", "iabc"}, {"E2b-Sandbox-Port", "99999999999999"}})}) {
    auto r = RouteRequest(head);
    ASSERT_TRUE(r);
    EXPECT_FALSE(*r);
  }
}

TEST(RouteRequestTest, HostRouting) {
  auto r = RouteRequest(Head({{"Host", "8080-iabc123.kiln.example:3000"}}));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->sandbox_id, "iabc123");
  EXPECT_EQ((*r)->port, 8080);
  // Upstream ignores anything after a second '-' in the label.
  auto extra = RouteRequest(Head({{"Host", "49983-iabc-extra.example"}}));
  ASSERT_TRUE(extra && *extra);
  EXPECT_EQ((*extra)->sandbox_id, "iabc");
}

TEST(RouteRequestTest, EverythingElseIsTheApi) {
  for (const char* host : {"127.0.0.1:3000", "localhost", "api.kiln.example", "my-host.example",
                           "abc-iabc.example", "8080-.example", "8080-UPPER.example", ""}) {
    EXPECT_FALSE(RouteRequest(Head({{"Host", host}}))) << host;
  }
}

}  // namespace
}  // namespace kiln::kilnd
