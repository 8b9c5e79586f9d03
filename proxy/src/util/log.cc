#include "dotproxy/util/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

#include <fmt/chrono.h>
#include <string>

#include "dotproxy/util/json.h"

namespace dotproxy::log {
namespace {
std::atomic<Level> g_level{Level::Info};
std::atomic<Format> g_format{Format::Text};

std::string_view levelName(Level l) {
  switch (l) {
    case Level::Debug:
      return "debug";
    case Level::Info:
      return "info";
    case Level::Warn:
      return "warn";
    case Level::Error:
      return "error";
    case Level::Off:
      return "off";
  }
  return "?";
}

// One line in the current format, with its newline. May throw (allocation).
std::string formatLine(Level level, std::string_view name, std::string_view message,
                       std::initializer_list<Field> fields) {
  auto now = std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now());
  if (g_format.load(std::memory_order_relaxed) == Format::Text) {
    return fmt::format("{:%FT%TZ} {} {}\n", now, levelName(level), message);
  }
  std::string line = fmt::format("{{\"ts\":\"{:%FT%TZ}\",\"level\":\"{}\",\"event\":{},\"msg\":{}",
                                 now, levelName(level), jsonString(name), jsonString(message));
  for (const Field& f : fields) {
    line += fmt::format(",{}:{}", jsonString(f.key), f.number ? f.value : jsonString(f.value));
  }
  line += "}\n";
  return line;
}

// Lines go to stderr through a bounded queue drained by one logger thread, so that a worker that
// logs never waits on the reader of stderr: a full pipe (a stalled log shipper, a terminal on
// hold) costs log lines, never DNS service. The thread's writes are ordinary blocking write(2)s;
// stderr's file status flags are left alone, since a terminal or pipe may be shared with other
// processes. Lines beyond the queue's bound or the per-second rate are dropped and counted. The
// state is allocated once and never freed: the thread may still be blocked in write(2) when the
// process exits, and must not find its queue destroyed under it.
class Sink {
 public:
  Sink() : thread_([this] { drain(); }) { thread_.detach(); }

  void push(std::string line) noexcept {
    auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mutex_);
      if (now - window_start_ >= std::chrono::seconds(1)) {
        window_start_ = now;
        window_lines_ = 0;
      }
      if (queue_.size() >= kMaxQueuedLines || window_lines_ >= kMaxLinesPerSecond) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      ++window_lines_;
      queue_.push_back(std::move(line));
    }
    wake_.notify_one();
  }

  bool flush(std::chrono::milliseconds bound) noexcept {
    std::unique_lock lock(mutex_);
    return idle_.wait_for(lock, bound, [this] { return queue_.empty() && !writing_; });
  }

  uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

 private:
  static constexpr size_t kMaxQueuedLines = 2048;
  static constexpr unsigned kMaxLinesPerSecond = 20000;

  void drain() {
    std::deque<std::string> batch;
    uint64_t reported = 0;
    std::chrono::steady_clock::time_point last_report{};
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait_for(lock, std::chrono::seconds(1), [this] { return !queue_.empty(); });
      batch.swap(queue_);
      writing_ = !batch.empty();
      lock.unlock();
      for (const std::string& line : batch) writeLine(line);
      batch.clear();
      // Say so once a second at most when lines were lost (after the backlog, which is older).
      auto now = std::chrono::steady_clock::now();
      if (uint64_t d = dropped(); d != reported && now - last_report >= std::chrono::seconds(1)) {
        last_report = now;
        try {
          writeLine(formatLine(Level::Warn, "log_lines_dropped",
                               fmt::format("{} log lines dropped so far (stderr too slow, or over "
                                           "{} lines a second)",
                                           d, kMaxLinesPerSecond),
                               {field("dropped", d)}));
        } catch (...) {
          // Out of memory: the count is still in the metrics.
        }
        reported = d;
      }
      lock.lock();
      writing_ = false;
      if (queue_.empty()) idle_.notify_all();
    }
  }

  static void writeLine(const std::string& line) noexcept {
    size_t off = 0;
    while (off < line.size()) {
      ssize_t n = ::write(STDERR_FILENO, line.data() + off, line.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::string> queue_;
  bool writing_ = false;
  std::chrono::steady_clock::time_point window_start_{};
  unsigned window_lines_ = 0;
  std::atomic<uint64_t> dropped_{0};
  std::thread thread_;
};

Sink& sink() {
  static Sink* s = [] {
    auto* created = new Sink();  // never freed: see Sink
    // Every program that logs (the daemon, the tools) writes its last lines before it exits, as
    // long as stderr is being read: bounded, since a stalled reader must not hold up the exit.
    std::atexit([] { sink().flush(std::chrono::seconds(2)); });
    return created;
  }();
  return *s;
}

}  // namespace

void setFormat(Format format) noexcept {
  g_format.store(format, std::memory_order_relaxed);
}

bool parseFormat(std::string_view text, Format& out) noexcept {
  if (text == "text") {
    out = Format::Text;
  } else if (text == "json") {
    out = Format::Json;
  } else {
    return false;
  }
  return true;
}

void start() noexcept {
  (void)sink();
}

void setLevel(Level level) noexcept {
  g_level.store(level, std::memory_order_relaxed);
}
Level level() noexcept {
  return g_level.load(std::memory_order_relaxed);
}

bool parseLevel(std::string_view text, Level& out) noexcept {
  if (text == "debug")
    out = Level::Debug;
  else if (text == "info")
    out = Level::Info;
  else if (text == "warn" || text == "warning")
    out = Level::Warn;
  else if (text == "error")
    out = Level::Error;
  else if (text == "off")
    out = Level::Off;
  else
    return false;
  return true;
}

void write(Level level, std::string_view message) noexcept {
  event(level, "log", message);
}

void event(Level level, std::string_view name, std::string_view message,
           std::initializer_list<Field> fields) noexcept {
  if (level < g_level.load(std::memory_order_relaxed) || level == Level::Off) return;
  try {
    sink().push(formatLine(level, name, message, fields));
  } catch (...) {
    // Logging never takes the process down.
  }
}

}  // namespace dotproxy::log

namespace dotproxy::log {

bool flush(std::chrono::milliseconds bound) noexcept {
  return sink().flush(bound);
}

uint64_t droppedLines() noexcept {
  return sink().dropped();
}

}  // namespace dotproxy::log
