#pragma once
// Leveled logging to stderr, one line per event. Thread-safe (one write(2) per line).

#include <fmt/format.h>
#include <string_view>

namespace dotproxy::log {

enum class Level : uint8_t { Debug, Info, Warn, Error, Off };

void setLevel(Level level) noexcept;
Level level() noexcept;
// Parses "debug", "info", "warn"/"warning", "error", "off"; false if unknown.
bool parseLevel(std::string_view text, Level& out) noexcept;
void write(Level level, std::string_view message) noexcept;

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
