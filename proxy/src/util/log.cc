#include "dotproxy/util/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>

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

void writeLine(const std::string& line) noexcept {
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(STDERR_FILENO, line.data() + off, line.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
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
    auto now = std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now());
    std::string line;
    if (g_format.load(std::memory_order_relaxed) == Format::Text) {
      line = fmt::format("{:%FT%TZ} {} {}\n", now, levelName(level), message);
    } else {
      line = fmt::format("{{\"ts\":\"{:%FT%TZ}\",\"level\":\"{}\",\"event\":{},\"msg\":{}", now,
                         levelName(level), jsonString(name), jsonString(message));
      for (const Field& f : fields) {
        line += fmt::format(",{}:{}", jsonString(f.key), f.number ? f.value : jsonString(f.value));
      }
      line += "}\n";
    }
    writeLine(line);
  } catch (...) {
    // Logging never takes the process down.
  }
}

}  // namespace dotproxy::log
