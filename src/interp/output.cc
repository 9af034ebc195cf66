#include "interp/output.h"

#include <time.h>

#include <array>
#include <utility>

#include "base/encoding.h"

namespace kiln::interp {
namespace {

using json = nlohmann::json;

// MIME type -> field of a result line.
constexpr std::array<std::pair<std::string_view, std::string_view>, 12> kMimeFields = {{
    {"text/plain", "text"},
    {"text/html", "html"},
    {"text/markdown", "markdown"},
    {"image/svg+xml", "svg"},
    {"image/png", "png"},
    {"image/jpeg", "jpeg"},
    {"application/pdf", "pdf"},
    {"text/latex", "latex"},
    {"application/json", "json"},
    {"application/javascript", "javascript"},
    {"e2b/data", "data"},
    {"e2b/chart", "chart"},
}};

std::string StringOf(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Jupyter allows multi-line text values as a list of strings.
json JoinedIfList(const json& value) {
  if (!value.is_array()) return value;
  std::string out;
  for (const json& part : value) {
    if (!part.is_string()) return value;
    out += part.get<std::string>();
  }
  return out;
}

}  // namespace

json StreamLine(std::string_view type, std::string_view text, std::string_view timestamp) {
  json line = json::object();
  line["type"] = type;
  line["text"] = text;
  line["timestamp"] = timestamp;
  return line;
}

json ErrorLine(std::string_view name, std::string_view value, std::string_view traceback) {
  json line = json::object();
  line["type"] = "error";
  line["name"] = name;
  line["value"] = value;
  line["traceback"] = traceback;
  return line;
}

json ResultLine(const json& data, bool is_main_result) {
  json line = json::object();
  line["type"] = "result";
  json extra = json::object();
  if (data.is_object()) {
    for (const auto& [mime, value] : data.items()) {
      if (value.is_null()) continue;
      std::string_view field;
      for (const auto& [m, f] : kMimeFields) {
        if (m == mime) field = f;
      }
      if (field.empty()) {
        extra[mime] = value;
        continue;
      }
      json v = JoinedIfList(value);
      if (field == "text" && v.is_string()) {
        std::string text = v.get<std::string>();
        if (text.size() >= 2 && ((text.front() == '\'' && text.back() == '\'') ||
                                 (text.front() == '"' && text.back() == '"'))) {
          text = text.substr(1, text.size() - 2);
        }
        v = std::move(text);
      }
      line[std::string(field)] = std::move(v);
    }
  }
  line["extra"] = std::move(extra);
  line["is_main_result"] = is_main_result;
  return line;
}

std::optional<json> OutputLine(const Message& message, std::string_view timestamp) {
  std::string_view type = message.msg_type();
  const json& c = message.content;
  if (type == "execute_input") {
    auto it = c.find("execution_count");
    if (it == c.end() || !it->is_number_integer()) return std::nullopt;
    json line = json::object();
    line["type"] = "number_of_executions";
    line["execution_count"] = *it;
    return line;
  }
  if (type == "stream") {
    std::string name = StringOf(c, "name");
    if (name != "stdout" && name != "stderr") return std::nullopt;
    return StreamLine(name, StringOf(c, "text"), timestamp);
  }
  if (type == "execute_result" || type == "display_data") {
    auto it = c.find("data");
    if (it == c.end() || !it->is_object()) return std::nullopt;
    return ResultLine(*it, type == "execute_result");
  }
  if (type == "error") {
    std::string traceback;
    if (auto it = c.find("traceback"); it != c.end() && it->is_array()) {
      for (const json& frame : *it) {
        if (!frame.is_string()) continue;
        if (!traceback.empty()) traceback += '\n';
        traceback += frame.get<std::string>();
      }
    }
    return ErrorLine(StringOf(c, "ename"), StringOf(c, "evalue"), traceback);
  }
  return std::nullopt;
}

std::string Serialize(const json& line) {
  std::string out = line.dump(-1, ' ', false, json::error_handler_t::replace);
  out += '\n';
  return out;
}

std::string StreamTimestamp() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return FormatRfc3339(ts.tv_sec, ts.tv_nsec);
}

}  // namespace kiln::interp
