#include "cli/mcp_interp.h"

#include "http/connect.h"

namespace kiln::cli::mcp {

using nlohmann::json;

namespace {

constexpr size_t kMaxLine = 64 << 20;
// How much of each output stream goes back to the agent.
constexpr size_t kMaxStreamText = 100 * 1024;

std::string Str(const json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

CodeResult ParseResult(const json& j) {
  CodeResult r;
  if (auto m = j.find("is_main_result"); m != j.end() && m->is_boolean()) r.is_main = m->get<bool>();
  for (const auto& [key, value] : j.items()) {
    if (key == "type" || key == "is_main_result" || value.is_null()) continue;
    if (key == "extra" && value.is_object() && value.empty()) continue;
    r.formats.push_back(key);
  }
  r.text = Str(j, "text");
  if (auto p = j.find("png"); p != j.end() && p->is_string()) r.png = p->get<std::string>();
  if (auto p = j.find("jpeg"); p != j.end() && p->is_string()) r.jpeg = p->get<std::string>();
  return r;
}

json Image(const std::string& data, std::string_view mime) {
  json c = json::object();
  c["type"] = "image";
  c["data"] = data;
  c["mimeType"] = mime;
  return c;
}

json Text(std::string text) {
  json c = json::object();
  c["type"] = "text";
  c["text"] = std::move(text);
  return c;
}

std::string Section(std::string_view name, std::string_view body) {
  std::string out = "[" + std::string(name) + "]\n" + std::string(body);
  if (!out.ends_with('\n')) out += '\n';
  return out;
}

}  // namespace

std::string ExecuteRequestBody(const ExecuteSpec& spec) {
  json body = json::object();
  body["code"] = spec.code;
  if (spec.language) body["language"] = *spec.language;
  if (spec.context_id) body["context_id"] = *spec.context_id;
  if (!spec.env.empty()) body["env_vars"] = spec.env;
  return http::connect::Dump(body);
}

Status ExecutionStream::Feed(std::string_view bytes) {
  pending_.append(bytes);
  size_t start = 0;
  for (;;) {
    size_t nl = pending_.find('\n', start);
    if (nl == std::string::npos) break;
    KILN_TRY(Line(std::string_view(pending_).substr(start, nl - start)));
    start = nl + 1;
  }
  pending_.erase(0, start);
  if (pending_.size() > kMaxLine) {
    return Fail(Errc::kInvalidArgument, "code interpreter sent a line above 64 MiB");
  }
  return {};
}

Status ExecutionStream::Finish() {
  std::string last = std::move(pending_);
  pending_.clear();
  return Line(last);
}

Status ExecutionStream::Line(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  if (line.empty()) return {};
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return Fail(Errc::kInvalidArgument,
                "code interpreter sent a malformed line: " + std::string(line.substr(0, 200)));
  }
  std::string type = Str(j, "type");
  if (type == "stdout") {
    execution_.stdout_text += Str(j, "text");
  } else if (type == "stderr") {
    execution_.stderr_text += Str(j, "text");
  } else if (type == "result") {
    execution_.results.push_back(ParseResult(j));
  } else if (type == "error") {
    execution_.error = CodeError{Str(j, "name"), Str(j, "value"), Str(j, "traceback")};
  } else if (type == "number_of_executions") {
    if (auto c = j.find("execution_count"); c != j.end() && c->is_number_integer()) {
      execution_.execution_count = c->get<int64_t>();
    }
  } else if (type == "end_of_execution") {
    execution_.ended = true;
  }
  // keepalive and unknown types are ignored, as the SDKs do.
  return {};
}

std::string StripAnsi(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\x1b') {
      out += text[i];
      continue;
    }
    // ESC [ params final-byte (CSI), or ESC + one character.
    if (i + 1 < text.size() && text[i + 1] == '[') {
      size_t j = i + 2;
      while (j < text.size() && !(text[j] >= 0x40 && text[j] <= 0x7e)) ++j;
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

std::string Truncate(std::string_view text, size_t limit) {
  if (text.size() <= limit) return std::string(text);
  size_t head = limit / 2;
  size_t tail = limit - head;
  return std::string(text.substr(0, head)) + "\n[... " +
         std::to_string(text.size() - head - tail) + " bytes omitted ...]\n" +
         std::string(text.substr(text.size() - tail));
}

json CodeExecutionResult(const CodeExecution& ex, std::string_view sandbox_note) {
  std::string text;
  if (!ex.stdout_text.empty()) text += Section("stdout", Truncate(ex.stdout_text, kMaxStreamText));
  if (!ex.stderr_text.empty()) text += Section("stderr", Truncate(ex.stderr_text, kMaxStreamText));
  json content = json::array();
  json results = json::array();
  std::string main_text;
  int images = 0;
  for (const auto& r : ex.results) {
    if (r.is_main) main_text = r.text;
    bool image = r.png || r.jpeg;
    if (r.is_main && !r.text.empty()) {
      text += Section("result", Truncate(r.text, kMaxStreamText));
    } else if (!image && !r.text.empty()) {
      text += Section("display", Truncate(r.text, kMaxStreamText));
    }
    if (image) ++images;
    json item = json::object();
    item["is_main_result"] = r.is_main;
    item["text"] = r.text;
    item["formats"] = r.formats;
    results.push_back(std::move(item));
  }
  if (images > 0) text += "[" + std::to_string(images) + " image(s) attached]\n";
  json error = nullptr;
  if (ex.error) {
    std::string tb = StripAnsi(ex.error->traceback);
    text += "[error] " + ex.error->name + ": " + ex.error->value + "\n";
    if (!tb.empty()) text += Section("traceback", Truncate(tb, kMaxStreamText));
    error = json::object();
    error["name"] = ex.error->name;
    error["value"] = ex.error->value;
    error["traceback"] = tb;
  }
  if (text.empty()) text = "(no output)\n";
  if (!sandbox_note.empty()) text += std::string(sandbox_note);
  content.push_back(Text(std::move(text)));
  for (const auto& r : ex.results) {
    if (r.png) content.push_back(Image(*r.png, "image/png"));
    if (r.jpeg) content.push_back(Image(*r.jpeg, "image/jpeg"));
  }
  json structured = json::object();
  structured["stdout"] = Truncate(ex.stdout_text, kMaxStreamText);
  structured["stderr"] = Truncate(ex.stderr_text, kMaxStreamText);
  structured["text"] = main_text;
  structured["results"] = std::move(results);
  structured["error"] = std::move(error);
  if (ex.execution_count) structured["execution_count"] = *ex.execution_count;
  json out = json::object();
  out["content"] = std::move(content);
  out["structuredContent"] = std::move(structured);
  out["isError"] = ex.error.has_value();
  return out;
}

}  // namespace kiln::cli::mcp
