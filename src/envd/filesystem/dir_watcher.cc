#include "envd/filesystem/dir_watcher.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace kiln::envd {

namespace net = boost::asio;

DirWatcher::DirWatcher(net::io_context& io, sys::InotifyWatch watch, size_t max_pending)
    : path_(watch.root()),
      watch_(std::move(watch)),
      readable_(io),
      wake_(io),
      max_pending_(max_pending) {}

DirWatcher::~DirWatcher() {
  // watch_ closes the fd; the descriptor only borrowed it.
  if (readable_.is_open()) (void)readable_.release();
}

Result<std::shared_ptr<DirWatcher>> DirWatcher::Start(net::io_context& io, const std::string& path,
                                                      bool recursive, size_t max_pending) {
  KILN_ASSIGN_OR_RETURN(sys::InotifyWatch watch, sys::InotifyWatch::Open(path, recursive));
  return Start(io, std::move(watch), max_pending);
}

Result<std::shared_ptr<DirWatcher>> DirWatcher::Start(net::io_context& io, sys::InotifyWatch watch,
                                                      size_t max_pending) {
  std::shared_ptr<DirWatcher> w(new DirWatcher(io, std::move(watch), max_pending));
  boost::system::error_code ec;
  w->readable_.assign(w->watch_.fd(), ec);
  if (ec) return Fail(Errc::kInternal, "watch " + w->path_ + ": " + ec.message());
  net::co_spawn(io, w->ReadLoop(w), net::detached);
  return w;
}

void DirWatcher::Stop() {
  stopped_ = true;
  boost::system::error_code ec;
  readable_.cancel(ec);
  wake_.cancel();
}

net::awaitable<void> DirWatcher::ReadLoop(std::shared_ptr<DirWatcher> self) {
  while (!stopped_) {
    boost::system::error_code ec;
    co_await readable_.async_wait(net::posix::descriptor_base::wait_read,
                                  net::redirect_error(net::use_awaitable, ec));
    if (ec || stopped_) break;
    Result<std::vector<sys::WatchEvent>> events = watch_.ReadEvents();
    if (!events) {
      FailWith(std::move(events).error());
      break;
    }
    Append(std::move(*events));
  }
  (void)self;  // keeps this object alive until the loop has unwound
}

void DirWatcher::Append(std::vector<sys::WatchEvent> events) {
  if (events.empty()) return;
  for (sys::WatchEvent& e : events) {
    // A large write is many IN_MODIFY events; one unread WRITE per path says the same.
    if (e.ops == sys::kWatchWrite && !pending_.empty() && pending_.back().ops == e.ops &&
        pending_.back().name == e.name) {
      continue;
    }
    if (pending_.size() >= max_pending_) {
      FailWith(Error(Errc::kResourceExhausted,
                     "more than " + std::to_string(max_pending_) + " unread events for " + path_ +
                         "; read them more often or watch less"));
      return;
    }
    pending_.push_back(std::move(e));
  }
  wake_.cancel();
}

void DirWatcher::FailWith(Error error) {
  if (!error_) error_ = std::move(error);
  Stop();
}

net::awaitable<void> DirWatcher::Wait(Clock::time_point until) {
  if (!pending_.empty() || error_ || stopped_) co_return;
  wake_.expires_at(until);
  boost::system::error_code ec;
  co_await wake_.async_wait(net::redirect_error(net::use_awaitable, ec));
}

std::vector<sys::WatchEvent> DirWatcher::Take() {
  std::vector<sys::WatchEvent> out(std::make_move_iterator(pending_.begin()),
                                   std::make_move_iterator(pending_.end()));
  pending_.clear();
  return out;
}

}  // namespace kiln::envd
