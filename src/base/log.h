#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace kiln::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

struct Field {
  std::string_view key;
  std::string value;
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  template <typename N>
    requires std::is_arithmetic_v<N>
  Field(std::string_view k, N v) : key(k), value(std::to_string(v)) {}
};

// Process-wide sink configuration; set once in main().
void SetMinLevel(Level level);
// "debug", "info", "warn" or "error".
std::optional<Level> ParseLevel(std::string_view name);
void SetJson(bool json);
bool Enabled(Level level);
void Write(Level level, std::string_view msg, std::initializer_list<Field> fields);

// Escapes control characters and truncates to `max` bytes: for strings a sandbox controls.
std::string Sanitize(std::string_view s, size_t max = 200);

}  // namespace kiln::log

#define KILN_LOG(level, msg, ...)                                                 \
  do {                                                                            \
    if (::kiln::log::Enabled(::kiln::log::Level::k##level)) {                     \
      ::kiln::log::Write(::kiln::log::Level::k##level, msg, {__VA_ARGS__});       \
    }                                                                             \
  } while (0)
