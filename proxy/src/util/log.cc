#include "dotproxy/util/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>

#include <fmt/chrono.h>
#include <string>

namespace dotproxy::log {
namespace {
std::atomic<Level> g_level{Level::Info};

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
}  // namespace

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
  try {
    auto now = std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now());
    std::string line = fmt::format("{:%FT%TZ} {} {}\n", now, levelName(level), message);
    size_t off = 0;
    while (off < line.size()) {
      ssize_t n = ::write(STDERR_FILENO, line.data() + off, line.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
  } catch (...) {
    // Logging never takes the process down.
  }
}

}  // namespace dotproxy::log
