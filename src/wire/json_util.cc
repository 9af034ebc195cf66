#include "wire/json_util.h"

#include <charconv>

#include "base/encoding.h"

namespace kiln::wire {
namespace {

std::unexpected<Error> WrongType(std::string_view field, std::string_view want) {
  return Fail(Errc::kInvalidArgument,
              "field '" + std::string(field) + "' must be " + std::string(want));
}

}  // namespace

const json* FindField(const json& obj, std::string_view camel, std::string_view snake) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(camel);
  if (it != obj.end() && !it->is_null()) return &*it;
  if (!snake.empty()) {
    it = obj.find(snake);
    if (it != obj.end() && !it->is_null()) return &*it;
  }
  return nullptr;
}

Result<std::optional<std::string>> GetString(const json& obj, std::string_view camel,
                                             std::string_view snake) {
  const json* f = FindField(obj, camel, snake);
  if (!f) return std::optional<std::string>();
  if (!f->is_string()) return WrongType(camel, "a string");
  return std::optional<std::string>(f->get<std::string>());
}

Result<std::optional<bool>> GetBool(const json& obj, std::string_view camel,
                                    std::string_view snake) {
  const json* f = FindField(obj, camel, snake);
  if (!f) return std::optional<bool>();
  if (!f->is_boolean()) return WrongType(camel, "a boolean");
  return std::optional<bool>(f->get<bool>());
}

Result<std::optional<int64_t>> GetInt(const json& obj, std::string_view camel,
                                      std::string_view snake) {
  const json* f = FindField(obj, camel, snake);
  if (!f) return std::optional<int64_t>();
  // is_number_integer() is also true for unsigned numbers, so check those first: a value
  // above INT64_MAX must not wrap around to a negative one.
  if (f->is_number_unsigned()) {
    uint64_t v = f->get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX)) return WrongType(camel, "a 64-bit integer");
    return std::optional<int64_t>(static_cast<int64_t>(v));
  }
  if (f->is_number_integer()) return std::optional<int64_t>(f->get<int64_t>());
  if (f->is_string()) {
    const std::string& s = f->get_ref<const std::string&>();
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && p == s.data() + s.size() && !s.empty()) {
      return std::optional<int64_t>(v);
    }
  }
  return WrongType(camel, "an integer");
}

Result<std::optional<json>> GetObject(const json& obj, std::string_view camel,
                                      std::string_view snake) {
  const json* f = FindField(obj, camel, snake);
  if (!f) return std::optional<json>();
  if (!f->is_object()) return WrongType(camel, "an object");
  return std::optional<json>(*f);
}

Result<std::optional<std::vector<std::string>>> GetStringList(const json& obj,
                                                              std::string_view camel,
                                                              std::string_view snake) {
  const json* f = FindField(obj, camel, snake);
  if (!f) return std::optional<std::vector<std::string>>();
  if (!f->is_array()) return WrongType(camel, "a list of strings");
  std::vector<std::string> out;
  for (const json& v : *f) {
    if (!v.is_string()) return WrongType(camel, "a list of strings");
    out.push_back(v.get<std::string>());
  }
  return std::optional<std::vector<std::string>>(std::move(out));
}

Result<std::optional<std::map<std::string, std::string>>> GetStringMap(
    const json& obj, std::string_view camel, std::string_view snake) {
  const json* f = FindField(obj, camel, snake);
  if (!f) return std::optional<std::map<std::string, std::string>>();
  if (!f->is_object()) return WrongType(camel, "a map of strings");
  std::map<std::string, std::string> out;
  for (auto it = f->begin(); it != f->end(); ++it) {
    if (!it.value().is_string()) return WrongType(camel, "a map of strings");
    out[it.key()] = it.value().get<std::string>();
  }
  return std::optional<std::map<std::string, std::string>>(std::move(out));
}

Result<std::optional<std::string>> GetBytes(const json& obj, std::string_view camel,
                                            std::string_view snake) {
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> text, GetString(obj, camel, snake));
  if (!text) return std::optional<std::string>();
  auto bytes = Base64Decode(*text);
  if (!bytes) return WrongType(camel, "base64");
  return std::optional<std::string>(std::move(*bytes));
}

}  // namespace kiln::wire
