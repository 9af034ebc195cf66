#include "envd/port_forward/port_forwarder.h"

#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <map>
#include <mutex>
#include <unordered_set>
#include <utility>

#include "base/log.h"
#include "envd/port_forward/proc_net_tcp.h"

namespace kiln::envd::port_forward {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using boost::system::error_code;

// Relays per direction through a buffer of this size.
constexpr size_t kRelayBufferBytes = 8 * 1024;

class PortListener;

// One accepted connection and its upstream connection to the loopback listener.
class Relay : public std::enable_shared_from_this<Relay> {
 public:
  Relay(tcp::socket client, std::shared_ptr<PortListener> listener);
  ~Relay();

  void Start(const tcp::endpoint& target);
  void Close();

 private:
  void Pump(int dir);
  tcp::socket& From(int dir) { return dir == 0 ? client_ : upstream_; }
  tcp::socket& To(int dir) { return dir == 0 ? upstream_ : client_; }

  tcp::socket client_;
  tcp::socket upstream_;
  std::shared_ptr<PortListener> listener_;
  std::array<bool, 2> eof_{false, false};
  std::array<std::array<char, kRelayBufferBytes>, 2> buf_;
};

// Counts the relays of every port together.
struct RelayBudget {
  size_t active = 0;
  size_t max = 0;
};

// The listening socket on <forward address>:<port> and the relays it started.
class PortListener : public std::enable_shared_from_this<PortListener> {
 public:
  PortListener(net::io_context& io, uint16_t port, tcp::endpoint target, size_t max_relays,
               std::shared_ptr<RelayBudget> budget)
      : acceptor_(io),
        port_(port),
        target_(std::move(target)),
        max_relays_(max_relays),
        budget_(std::move(budget)) {}

  // Binds and listens; a failure (someone else holds the port) is returned as a message.
  bool Open(const net::ip::address& address, std::string& error) {
    tcp::endpoint ep(address, port_);
    error_code ec;
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      error = ec.message();
      acceptor_.close(ec);
      return false;
    }
    return true;
  }

  // Issues the next accept unless one is pending, the listener closed or a limit is reached.
  // Idempotent; the forwarder calls it on every scan, relays when they end.
  void MaybeAccept() {
    if (closed_ || accepting_ || relays_.size() >= max_relays_ || budget_->active >= budget_->max) {
      return;
    }
    accepting_ = true;
    acceptor_.async_accept([self = shared_from_this()](const error_code& ec, tcp::socket socket) {
      self->accepting_ = false;
      if (self->closed_) return;
      if (ec) {
        // EMFILE, ENOBUFS, ...: the next scan tries again (no busy loop here).
        if (ec != net::error::operation_aborted) {
          KILN_LOG(Debug, "port forward: accept failed", {"port", self->port_},
                   {"error", ec.message()});
        }
        return;
      }
      auto relay = std::make_shared<Relay>(std::move(socket), self);
      relay->Start(self->target_);
      self->MaybeAccept();
    });
  }

  // Stops listening; relays keep running.
  void Close() {
    closed_ = true;
    error_code ec;
    acceptor_.close(ec);
  }

  // Stops listening and ends every relay.
  void CloseAll() {
    Close();
    // Close() on a relay only cancels its operations; relays leave the set when destroyed.
    std::vector<Relay*> relays(relays_.begin(), relays_.end());
    for (Relay* r : relays) r->Close();
  }

  void Add(Relay* relay) {
    relays_.insert(relay);
    ++budget_->active;
  }
  void Remove(Relay* relay) {
    if (relays_.erase(relay) > 0) --budget_->active;
    MaybeAccept();
  }

  uint16_t port() const { return port_; }
  const tcp::endpoint& target() const { return target_; }

 private:
  tcp::acceptor acceptor_;
  uint16_t port_;
  tcp::endpoint target_;
  size_t max_relays_;
  std::shared_ptr<RelayBudget> budget_;
  std::unordered_set<Relay*> relays_;
  bool accepting_ = false;
  bool closed_ = false;
};

Relay::Relay(tcp::socket client, std::shared_ptr<PortListener> listener)
    : client_(std::move(client)),
      upstream_(client_.get_executor()),
      listener_(std::move(listener)) {
  listener_->Add(this);
}

Relay::~Relay() { listener_->Remove(this); }

void Relay::Start(const tcp::endpoint& target) {
  error_code ec;
  client_.set_option(tcp::no_delay(true), ec);
  upstream_.async_connect(target, [self = shared_from_this()](const error_code& ec) {
    if (ec) {
      if (ec != net::error::operation_aborted) {
        KILN_LOG(Debug, "port forward: connect to loopback failed",
                 {"port", self->listener_->port()}, {"error", ec.message()});
      }
      self->Close();
      return;
    }
    error_code ignored;
    self->upstream_.set_option(tcp::no_delay(true), ignored);
    self->Pump(0);
    self->Pump(1);
  });
}

void Relay::Pump(int dir) {
  From(dir).async_read_some(
      net::buffer(buf_[dir]), [self = shared_from_this(), dir](const error_code& ec, size_t n) {
        if (ec == net::error::eof) {
          // Half-close: pass the FIN on; the other direction keeps going.
          self->eof_[dir] = true;
          error_code ignored;
          self->To(dir).shutdown(tcp::socket::shutdown_send, ignored);
          if (self->eof_[0] && self->eof_[1]) self->Close();
          return;
        }
        if (ec) {
          self->Close();  // reset, or cancelled by Close()
          return;
        }
        net::async_write(self->To(dir), net::buffer(self->buf_[dir].data(), n),
                         [self, dir](const error_code& ec, size_t) {
                           if (ec) {
                             self->Close();
                             return;
                           }
                           self->Pump(dir);
                         });
      });
}

void Relay::Close() {
  error_code ignored;
  client_.close(ignored);
  upstream_.close(ignored);
}

}  // namespace

class PortForwarder::Impl : public std::enable_shared_from_this<PortForwarder::Impl> {
 public:
  Impl(net::io_context& io, PortForwarderOptions options)
      : io_(io),
        options_(std::move(options)),
        timer_(io),
        budget_(std::make_shared<RelayBudget>()) {
    budget_->max = options_.max_relays;
  }

  void Start() {
    KILN_LOG(Info, "forwarding loopback listeners", {"to", options_.forward_address.to_string()});
    Scan();
  }

  void Stop() {
    stopped_ = true;
    timer_.cancel();
    for (auto& [port, listener] : ports_) listener->CloseAll();
    ports_.clear();
    Publish();
  }

  std::vector<uint16_t> ForwardedPorts() const {
    std::lock_guard lock(published_mu_);
    return published_;
  }
  uint64_t scans() const { return scans_.load(); }

 private:
  std::vector<TcpListener> ReadListeners() {
    std::vector<TcpListener> all;
    const std::pair<const std::string*, bool> files[] = {{&options_.proc_net_tcp, false},
                                                         {&options_.proc_net_tcp6, true}};
    for (const auto& [path, ipv6] : files) {
      Result<std::string> text = ReadProcNetFile(*path, options_.max_listing_bytes);
      if (!text) {
        // No tcp6 without IPv6; anything else is worth a line, but only once.
        if (text.error().code() != Errc::kNotFound && !read_error_logged_) {
          read_error_logged_ = true;
          KILN_LOG(Warn, "port forward: cannot read socket listing",
                   {"error", text.error().message()});
        }
        continue;
      }
      ProcNetTcpListing listing = ParseProcNetTcp(*text, ipv6);
      all.insert(all.end(), listing.listeners.begin(), listing.listeners.end());
    }
    return all;
  }

  void Scan() {
    if (stopped_) return;
    std::set<uint16_t> own;
    for (const auto& [port, listener] : ports_) own.insert(port);
    std::vector<TcpListener> listeners = ReadListeners();
    std::vector<ForwardTarget> plan =
        PlanForwards(listeners, options_.forward_address, own, options_.excluded_ports);
    std::map<uint16_t, tcp::endpoint> wanted;
    for (const ForwardTarget& t : plan) wanted.emplace(t.port, tcp::endpoint(t.target, t.port));

    for (auto it = ports_.begin(); it != ports_.end();) {
      auto w = wanted.find(it->first);
      if (w == wanted.end() || w->second != it->second->target()) {
        KILN_LOG(Debug, "port forward: stop", {"port", it->first});
        it->second->Close();
        it = ports_.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& [port, target] : wanted) {
      if (ports_.contains(port)) continue;
      if (ports_.size() >= options_.max_ports) {
        if (!limit_logged_) {
          limit_logged_ = true;
          KILN_LOG(Warn, "port forward: too many loopback listeners; not forwarding the rest",
                   {"max_ports", options_.max_ports});
        }
        break;
      }
      auto listener = std::make_shared<PortListener>(io_, port, target,
                                                     options_.max_relays_per_port, budget_);
      std::string error;
      if (!listener->Open(options_.forward_address, error)) {
        KILN_LOG(Debug, "port forward: bind failed; retrying later", {"port", port},
                 {"error", error});
        continue;
      }
      KILN_LOG(Debug, "port forward: start", {"port", port},
               {"target", target.address().to_string()});
      ports_.emplace(port, std::move(listener));
    }
    for (auto& [port, listener] : ports_) listener->MaybeAccept();
    Publish();
    ++scans_;

    timer_.expires_after(options_.scan_interval);
    timer_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (ec || self->stopped_) return;
      self->Scan();
    });
  }

  void Publish() {
    std::vector<uint16_t> ports;
    for (const auto& [port, listener] : ports_) ports.push_back(port);
    std::lock_guard lock(published_mu_);
    published_ = std::move(ports);
  }

  net::io_context& io_;
  PortForwarderOptions options_;
  net::steady_timer timer_;
  std::shared_ptr<RelayBudget> budget_;
  std::map<uint16_t, std::shared_ptr<PortListener>> ports_;
  bool stopped_ = false;
  bool read_error_logged_ = false;
  bool limit_logged_ = false;
  std::atomic<uint64_t> scans_{0};
  mutable std::mutex published_mu_;
  std::vector<uint16_t> published_;
};

PortForwarder::PortForwarder(net::io_context& io, PortForwarderOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(options))) {}

PortForwarder::~PortForwarder() { impl_->Stop(); }

void PortForwarder::Start() { impl_->Start(); }

std::vector<uint16_t> PortForwarder::ForwardedPorts() const { return impl_->ForwardedPorts(); }

uint64_t PortForwarder::scans() const { return impl_->scans(); }

}  // namespace kiln::envd::port_forward
