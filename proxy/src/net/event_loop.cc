#include "dotproxy/net/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>

#include "dotproxy/util/log.h"

namespace dotproxy::net {

namespace {
// Marks the eventfd in epoll's data; handlers are never this address.
char g_wake_tag;
}  // namespace

EventLoop::EventLoop() : now_(Clock::now()) {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) throw std::system_error(errno, std::generic_category(), "eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &g_wake_tag;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) != 0) {
    throw std::system_error(errno, std::generic_category(), "epoll_ctl");
  }
}

EventLoop::~EventLoop() = default;

Result<void> EventLoop::add(int fd, uint32_t events, Handler* h, int* err_no) noexcept {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = h;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    if (err_no) *err_no = errno;
    return std::unexpected(Errc::IoError);
  }
  return {};
}

Result<void> EventLoop::modify(int fd, uint32_t events, Handler* h, int* err_no) noexcept {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = h;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) {
    if (err_no) *err_no = errno;
    return std::unexpected(Errc::IoError);
  }
  return {};
}

void EventLoop::remove(int fd) noexcept {
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EventLoop::after(Clock::duration d, Task fn) {
  TimerId id = next_timer_++;
  timers_.emplace(id, std::move(fn));
  timer_heap_.push_back({Clock::now() + d, id});
  std::push_heap(timer_heap_.begin(), timer_heap_.end(), std::greater<>());
  return id;
}

void EventLoop::cancel(TimerId id) noexcept {
  if (id == 0 || timers_.erase(id) == 0) return;
  if (timer_heap_.size() > 1024 && timer_heap_.size() > 4 * timers_.size()) {
    std::erase_if(timer_heap_, [this](const TimerEntry& e) { return !timers_.contains(e.id); });
    std::make_heap(timer_heap_.begin(), timer_heap_.end(), std::greater<>());
  }
}

void EventLoop::defer(Task fn) {
  deferred_.push_back(std::move(fn));
}

void EventLoop::post(Task fn) {
  {
    std::lock_guard lock(posted_mutex_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

void EventLoop::stop() noexcept {
  post([this] { stopping_ = true; });
}

int EventLoop::nextTimeoutMs() const {
  if (!deferred_.empty()) return 0;
  if (timer_heap_.empty()) return 1000;
  auto wait = timer_heap_.front().when - Clock::now();
  if (wait <= Clock::duration::zero()) return 0;
  // Round up so a timer never fires early and the loop does not spin.
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
  return static_cast<int>(std::min<int64_t>(ms, 1000));
}

void EventLoop::runTimers() {
  while (!timer_heap_.empty() && timer_heap_.front().when <= now_) {
    TimerId id = timer_heap_.front().id;
    std::pop_heap(timer_heap_.begin(), timer_heap_.end(), std::greater<>());
    timer_heap_.pop_back();
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;  // cancelled
    Task fn = std::move(it->second);
    timers_.erase(it);
    fn();
  }
}

void EventLoop::runPosted() {
  uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(wake_.get(), &count, sizeof count);
  std::vector<Task> tasks;
  {
    std::lock_guard lock(posted_mutex_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void EventLoop::run() {
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  while (!stopping_) {
    int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, nextTimeoutMs());
    now_ = Clock::now();
    if (n < 0) {
      if (errno == EINTR) continue;
      // EBADF, EFAULT, EINVAL: the loop's own state is broken. An exception here would end in
      // std::terminate on a worker thread with nothing said; say what happened, then abort.
      int err = errno;
      log::event(log::Level::Error, "event_loop_failed",
                 std::string("epoll_wait: ") + std::strerror(err) + "; aborting");
      log::flush(std::chrono::seconds(1));
      std::abort();
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == &g_wake_tag) {
        runPosted();
      } else {
        static_cast<Handler*>(events[i].data.ptr)->onEvents(events[i].events);
      }
    }
    runTimers();
    // Deferred tasks may defer more; run until quiet.
    // The two vectors trade places and keep their capacity: a busy loop does not allocate here.
    while (!deferred_.empty()) {
      running_.swap(deferred_);
      for (auto& t : running_) t();
      running_.clear();
    }
  }
}

}  // namespace dotproxy::net
