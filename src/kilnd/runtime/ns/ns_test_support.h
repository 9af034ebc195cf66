#pragma once

// Helpers for the privileged tests of the ns runtime (included only by *_test.cc): a tiny
// blocking HTTP/1.1 client over Instance::OpenSocket() and a Connect-RPC call of kiln-envd's
// process.Process/Start that collects the output of a command.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "base/encoding.h"
#include "base/error.h"
#include "base/unique_fd.h"
#include "kilnd/runtime/runtime.h"

namespace kiln::kilnd::ns::testing {

using Clock = std::chrono::steady_clock;

struct HttpResponse {
  int status = 0;
  std::string headers;
  std::string body;  // de-chunked
};

inline int MsLeft(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms < 0 ? 0 : static_cast<int>(ms);
}

// Connects to 127.0.0.1:port inside the sandbox. The agent may not listen yet right after
// Create(): refused connections are retried (2 ms apart) until `deadline`.
inline Result<UniqueFd> ConnectAgent(Instance& inst, uint16_t port, Clock::time_point deadline) {
  for (;;) {
    KILN_ASSIGN_OR_RETURN(UniqueFd fd, inst.OpenSocket());
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    int err = r == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
      pollfd p{fd.get(), POLLOUT, 0};
      if (poll(&p, 1, MsLeft(deadline)) != 1) return Fail(Errc::kTimeout, "connect timed out");
      socklen_t len = sizeof err;
      getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    }
    if (err == 0) return fd;
    if (err != ECONNREFUSED || MsLeft(deadline) == 0) return FailErrno("connect to agent", err);
    poll(nullptr, 0, 2);
  }
}

inline Status SendAll(int fd, const std::string& data, Clock::time_point deadline) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN) return FailErrno("send");
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, MsLeft(deadline)) != 1) return Fail(Errc::kTimeout, "send timed out");
  }
  return {};
}

// Reads until EOF or `deadline`; kTimeout when the deadline came first.
inline Result<std::string> ReadToEof(int fd, Clock::time_point deadline) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return out;
    if (errno != EAGAIN) return FailErrno("recv");
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, MsLeft(deadline)) != 1) return Fail(Errc::kTimeout, "response timed out");
  }
}

inline std::string Dechunk(const std::string& body) {
  std::string out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string::npos) break;
    size_t len = std::stoul(body.substr(pos, eol - pos), nullptr, 16);
    if (len == 0) break;
    out += body.substr(eol + 2, len);
    pos = eol + 2 + len + 2;
  }
  return out;
}

inline Result<HttpResponse> ParseResponse(const std::string& raw) {
  size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos || raw.size() < 12) {
    return Fail(Errc::kInternal, "malformed response: " + raw.substr(0, 200));
  }
  HttpResponse r;
  r.status = std::atoi(raw.substr(9, 3).c_str());
  r.headers = raw.substr(0, end);
  r.body = raw.substr(end + 4);
  std::string lower = r.headers;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.find("transfer-encoding: chunked") != std::string::npos) r.body = Dechunk(r.body);
  return r;
}

// One request with "Connection: close"; `request` is everything up to the blank line.
inline Result<HttpResponse> HttpExchange(Instance& inst, const std::string& head,
                                         const std::string& body,
                                         std::chrono::milliseconds timeout =
                                             std::chrono::seconds(20)) {
  auto deadline = Clock::now() + timeout;
  KILN_ASSIGN_OR_RETURN(UniqueFd fd, ConnectAgent(inst, 49983, deadline));
  std::string req = head + "Host: sandbox\r\nConnection: close\r\n";
  if (!body.empty()) req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  KILN_TRY(SendAll(fd.get(), req, deadline));
  KILN_ASSIGN_OR_RETURN(std::string raw, ReadToEof(fd.get(), deadline));
  return ParseResponse(raw);
}

inline Result<int> GetHealth(Instance& inst) {
  KILN_ASSIGN_OR_RETURN(HttpResponse r, HttpExchange(inst, "GET /health HTTP/1.1\r\n", ""));
  return r.status;
}

struct CommandResult {
  std::string output;  // stdout and stderr, in arrival order
  int exit_code = -1;
};

inline std::string Envelope(const std::string& json) {
  std::string out(5, '\0');
  uint32_t len = htonl(static_cast<uint32_t>(json.size()));
  std::memcpy(out.data() + 1, &len, 4);
  return out + json;
}

// Runs `/bin/sh -c script` as root through kiln-envd and waits for its end.
inline Result<CommandResult> RunCommand(Instance& inst, const std::string& script,
                                        std::chrono::milliseconds timeout =
                                            std::chrono::seconds(60)) {
  nlohmann::json req;
  req["process"]["cmd"] = "/bin/sh";
  req["process"]["args"] = nlohmann::json::array({"-c", script});
  KILN_ASSIGN_OR_RETURN(
      HttpResponse r,
      HttpExchange(inst,
                   "POST /process.Process/Start HTTP/1.1\r\n"
                   "Content-Type: application/connect+json\r\n",
                   Envelope(req.dump()), timeout));
  if (r.status != 200) {
    return Fail(Errc::kInternal, "Start: HTTP " + std::to_string(r.status) + " " + r.body);
  }
  CommandResult out;
  size_t pos = 0;
  while (pos + 5 <= r.body.size()) {
    uint8_t flags = static_cast<uint8_t>(r.body[pos]);
    uint32_t len;
    std::memcpy(&len, r.body.data() + pos + 1, 4);
    len = ntohl(len);
    std::string payload = r.body.substr(pos + 5, len);
    pos += 5 + len;
    auto j = nlohmann::json::parse(payload, nullptr, false);
    if (j.is_discarded()) return Fail(Errc::kInternal, "bad envelope: " + payload);
    if (flags & 0x02) {
      if (j.contains("error")) return Fail(Errc::kInternal, "Start failed: " + payload);
      continue;
    }
    const auto& ev = j["event"];
    if (ev.contains("data")) {
      for (const char* stream : {"stdout", "stderr"}) {
        if (ev["data"].contains(stream)) {
          out.output += Base64Decode(ev["data"][stream].get<std::string>()).value_or("?");
        }
      }
    }
    if (ev.contains("end")) out.exit_code = ev["end"].value("exitCode", 0);
  }
  return out;
}

}  // namespace kiln::kilnd::ns::testing
