#pragma once
// One epoll loop per worker thread, with timers and a thread-safe post(). Callbacks run on the
// loop's thread. Handlers must outlive their registration: remove() the fd, then free the handler
// through defer() so that events already fetched in the same batch never reach a dead object.

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "dotproxy/net/socket.h"
#include "dotproxy/util/result.h"

namespace dotproxy::net {

using Clock = std::chrono::steady_clock;

class EventLoop {
 public:
  struct Handler {
    virtual void onEvents(uint32_t epoll_events) = 0;

   protected:
    ~Handler() = default;
  };
  using Task = std::move_only_function<void()>;
  using TimerId = uint64_t;

  EventLoop();  // throws std::system_error
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Registers fd / changes what it waits for. A failure (a closed or already registered fd, out of
  // kernel memory: EBADF, EEXIST, ENOENT, ENOMEM, ENOSPC) is a value, never an exception: the
  // caller closes that one connection (or, at start-up, fails the start). errno in *err_no if
  // given.
  [[nodiscard]] Result<void> add(int fd, uint32_t events, Handler* h,
                                 int* err_no = nullptr) noexcept;
  [[nodiscard]] Result<void> modify(int fd, uint32_t events, Handler* h,
                                    int* err_no = nullptr) noexcept;
  void remove(int fd) noexcept;

  // Timers run once; cancel() of a fired or unknown id is a no-op.
  TimerId after(Clock::duration d, Task fn);
  void cancel(TimerId id) noexcept;

  // Runs fn on this loop after the current batch of events. Loop thread only.
  void defer(Task fn);
  // Runs fn on this loop's thread soon. Thread-safe.
  void post(Task fn);

  // Time at the start of the current iteration (cheap).
  Clock::time_point now() const noexcept { return now_; }

  // Until stop(). epoll_wait on our own epoll fd fails only with EINTR (retried) unless memory is
  // corrupt: any other error is logged and aborts the process (it cannot go on without its loop).
  void run();
  void stop() noexcept;  // thread-safe

 private:
  void runTimers();
  void runPosted();
  int nextTimeoutMs() const;

  Fd epoll_;
  Fd wake_;  // eventfd
  bool stopping_ = false;
  Clock::time_point now_;

  struct TimerEntry {
    Clock::time_point when;
    TimerId id;
    bool operator>(const TimerEntry& o) const noexcept { return when > o.when; }
  };
  // A min-heap (std::push_heap/pop_heap with greater<>). Cancelled timers leave their entry behind;
  // the heap is rebuilt from the live ones when dead entries dominate, so it stays O(live timers).
  std::vector<TimerEntry> timer_heap_;
  std::unordered_map<TimerId, Task> timers_;
  TimerId next_timer_ = 1;

  std::vector<Task> deferred_;
  std::vector<Task> running_;  // the deferred tasks being run
  std::mutex posted_mutex_;
  std::vector<Task> posted_;
};

}  // namespace dotproxy::net
