#pragma once
// Leveled logging to stderr, one line per event. Thread-safe and never blocking: lines are queued
// (bounded) and written by a logger thread; lines beyond the bound or 20000 a second are dropped
// and counted (droppedLines), so a slow reader of stderr costs log lines, never service.

#include <fmt/format.h>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace dotproxy::log {

enum class Level : uint8_t { Debug, Info, Warn, Error, Off };

// Text (default): "TIME LEVEL message". JSON lines: {"ts","level","event","msg", then the fields}.
enum class Format : uint8_t { Text, Json };

// A field of an event, for machines: text, or a number written bare in JSON.
struct Field {
  std::string_view key;
  std::string value;
  bool number = false;
};
inline Field field(std::string_view key, std::string_view value) {
  return {key, std::string(value), false};
}
template <std::integral T>
Field field(std::string_view key, T value) {
  return {key, fmt::format("{}", value), true};
}

void setLevel(Level level) noexcept;
// Starts the logger thread now rather than at the first line. The daemon calls it at start-up:
// the first line may come when descriptors or memory have run out (EMFILE), when starting a
// thread is the last thing to do. Idempotent.
void start() noexcept;
void setFormat(Format format) noexcept;
// Parses "text" or "json"; false if unknown.
bool parseFormat(std::string_view text, Format& out) noexcept;
Level level() noexcept;
// Parses "debug", "info", "warn"/"warning", "error", "off"; false if unknown.
bool parseLevel(std::string_view text, Level& out) noexcept;
void write(Level level, std::string_view message) noexcept;  // event "log", no fields

// Waits until every queued line is written, at most `bound` (a stalled stderr must not hold up the
// exit). False if lines were still queued. Call before a clean exit.
bool flush(std::chrono::milliseconds bound) noexcept;
// Lines dropped since start (queue full or over the rate). Thread-safe.
uint64_t droppedLines() noexcept;

// One event: a stable snake_case name, a message for people, fields for machines (JSON only; the
// text format prints the message, which says the same in words).
void event(Level level, std::string_view name, std::string_view message,
           std::initializer_list<Field> fields = {}) noexcept;
inline bool enabled(Level l) noexcept {
  return level() <= l;
}

template <class... Args>
void debug(fmt::format_string<Args...> fmt, Args&&... args) {
  if (level() <= Level::Debug) write(Level::Debug, fmt::format(fmt, std::forward<Args>(args)...));
}
template <class... Args>
void info(fmt::format_string<Args...> fmt, Args&&... args) {
  if (level() <= Level::Info) write(Level::Info, fmt::format(fmt, std::forward<Args>(args)...));
}
template <class... Args>
void warn(fmt::format_string<Args...> fmt, Args&&... args) {
  if (level() <= Level::Warn) write(Level::Warn, fmt::format(fmt, std::forward<Args>(args)...));
}
template <class... Args>
void error(fmt::format_string<Args...> fmt, Args&&... args) {
  if (level() <= Level::Error) write(Level::Error, fmt::format(fmt, std::forward<Args>(args)...));
}

}  // namespace dotproxy::log
