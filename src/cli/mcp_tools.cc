#include "cli/mcp_tools.h"

#include <cmath>

namespace kiln::cli::mcp {

using nlohmann::json;

namespace {

json Prop(std::string_view type, std::string_view description) {
  json p = json::object();
  p["type"] = type;
  p["description"] = description;
  return p;
}

json IntProp(std::string_view description, int64_t minimum, int64_t maximum) {
  json p = Prop("integer", description);
  p["minimum"] = minimum;
  p["maximum"] = maximum;
  return p;
}

json EnumProp(std::string_view description, std::initializer_list<std::string_view> values) {
  json p = Prop("string", description);
  json e = json::array();
  for (auto v : values) e.push_back(v);
  p["enum"] = e;
  return p;
}

json StringMapProp(std::string_view description) {
  json p = Prop("object", description);
  json values = json::object();
  values["type"] = "string";
  p["additionalProperties"] = values;
  return p;
}

json SandboxIdProp() {
  return Prop("string",
              "ID of the sandbox to use. Omit it to use this session's default sandbox, which is "
              "created on first use and killed when the MCP session ends.");
}

json UserProp() {
  return Prop("string",
              "User to act as inside the sandbox: \"user\" (the default; home /home/user, "
              "passwordless sudo) or \"root\".");
}

json Schema(json properties, std::initializer_list<std::string_view> required) {
  json s = json::object();
  s["type"] = "object";
  s["properties"] = std::move(properties);
  if (required.size() > 0) {
    json r = json::array();
    for (auto name : required) r.push_back(name);
    s["required"] = r;
  }
  s["additionalProperties"] = false;
  return s;
}

json Annotations(std::string_view title, bool read_only, bool destructive, bool idempotent) {
  json a = json::object();
  a["title"] = title;
  a["readOnlyHint"] = read_only;
  if (!read_only) a["destructiveHint"] = destructive;
  a["idempotentHint"] = idempotent;
  a["openWorldHint"] = false;
  return a;
}

json Tool(std::string_view name, std::string_view title, std::string description, json schema,
          json annotations) {
  json t = json::object();
  t["name"] = name;
  t["title"] = title;
  t["description"] = std::move(description);
  t["inputSchema"] = std::move(schema);
  t["annotations"] = std::move(annotations);
  return t;
}

json CreateSandboxTool(const ToolOptions& o) {
  json p = json::object();
  p["template"] = Prop(
      "string", "Template to start from: \"code-interpreter-v1\" (Debian with Python, Jupyter "
                "kernels, numpy, pandas, matplotlib; needed for run_code) or \"base\" (plain "
                "Debian with bash, python3, git, curl). Default: \"" + o.default_template + "\".");
  p["timeout"] = IntProp("Seconds the sandbox may live before kiln kills it (default " +
                             std::to_string(o.sandbox_timeout_s) + ").",
                         1, 86400);
  p["env"] = StringMapProp("Environment variables for every process in the sandbox.");
  p["metadata"] = StringMapProp("Labels to find the sandbox by (list_sandboxes shows them).");
  p["internet"] = Prop("boolean", "Allow outbound internet access (default true).");
  p["keep"] = Prop("boolean",
                   "Keep the sandbox running after this MCP session ends (default false: "
                   "sandboxes created in a session are killed when it ends).");
  p["make_default"] = Prop("boolean",
                           "Make it this session's default sandbox, used by other tools when "
                           "sandbox_id is omitted (default: true if there is no default yet).");
  return Tool("create_sandbox", "Create sandbox",
              "Starts a new isolated Linux sandbox (a throwaway Debian machine) and returns its "
              "ID. Usually unnecessary: the other tools create a default sandbox on first use. "
              "Create one explicitly for a different template, environment, no internet, to "
              "keep it after the session, or to work in several sandboxes at once.",
              Schema(p, {}), Annotations("Create sandbox", false, false, false));
}

json ListSandboxesTool() {
  json p = json::object();
  json states = Prop("array", "States to list (default both).");
  states["items"] = EnumProp("", {"running", "paused"});
  states["items"].erase("description");
  p["state"] = states;
  p["metadata"] = StringMapProp("Only sandboxes whose metadata has all these key/value pairs.");
  return Tool("list_sandboxes", "List sandboxes",
              "Lists the sandboxes of this kiln server (ID, template, state, start and end time, "
              "metadata) and marks the ones this session created and its default.",
              Schema(p, {}), Annotations("List sandboxes", true, false, true));
}

json KillSandboxTool() {
  json p = json::object();
  p["sandbox_id"] = Prop("string", "ID of the sandbox to kill.");
  return Tool("kill_sandbox", "Kill sandbox",
              "Kills a sandbox and deletes everything in it. If it was this session's default "
              "sandbox, the next tool call without sandbox_id creates a new one.",
              Schema(p, {"sandbox_id"}), Annotations("Kill sandbox", false, true, true));
}

json RunCodeTool() {
  json p = json::object();
  p["code"] = Prop("string", "The code to run, like one Jupyter notebook cell.");
  p["language"] = EnumProp("Kernel language (default python).", {"python", "javascript", "bash"});
  p["context_id"] = Prop("string",
                         "Run in this code context (a separate kernel) instead of the language's "
                         "default one.");
  p["env"] = StringMapProp("Environment variables for this execution only.");
  p["timeout"] = IntProp("Seconds to wait for the cell to finish (default 300).", 1, 86400);
  p["sandbox_id"] = SandboxIdProp();
  return Tool("run_code", "Run code",
              "Runs code in a stateful Jupyter kernel inside the sandbox, like a notebook cell: "
              "variables, imports and functions persist between calls in the same sandbox and "
              "language. Returns stdout, stderr, the value of the last expression, the error "
              "with its traceback, and charts (matplotlib figures, plt.show()) as PNG images. "
              "Needs a code-interpreter-v1 sandbox (the default sandbox is one). Python has "
              "numpy, pandas, matplotlib, seaborn and scikit-learn.",
              Schema(p, {"code"}), Annotations("Run code", false, true, false));
}

json RunCommandTool() {
  json p = json::object();
  p["cmd"] = Prop("string",
                  "Shell command, run with `bash -l -c` (pipes, redirections and && work).");
  p["cwd"] = Prop("string", "Working directory (default the user's home).");
  p["env"] = StringMapProp("Environment variables for this command.");
  p["user"] = UserProp();
  p["timeout"] = IntProp(
      "Seconds before the command is killed (default 60; with background, its lifetime, "
      "default unlimited).",
      1, 86400);
  p["background"] = Prop("boolean",
                         "Start the command and return at once with its PID instead of waiting "
                         "(for servers and long jobs; redirect its output to a file to read it "
                         "later).");
  p["sandbox_id"] = SandboxIdProp();
  return Tool("run_command", "Run shell command",
              "Runs a shell command in the sandbox and returns its exit code, stdout and stderr. "
              "A non-zero exit code is reported as an error. Use `sudo` for root, e.g. "
              "`sudo apt-get install -y jq`.",
              Schema(p, {"cmd"}), Annotations("Run shell command", false, true, false));
}

json ReadFileTool() {
  json p = json::object();
  p["path"] = Prop("string", "File to read; relative paths start at the user's home.");
  p["encoding"] = EnumProp(
      "\"utf-8\" (default) returns text; \"base64\" returns the bytes base64-encoded. Binary "
      "PNG, JPEG, GIF and WebP files come back as images either way.",
      {"utf-8", "base64"});
  p["user"] = UserProp();
  p["sandbox_id"] = SandboxIdProp();
  return Tool("read_file", "Read file", "Reads a file from the sandbox (at most 4 MiB).",
              Schema(p, {"path"}), Annotations("Read file", true, false, true));
}

json WriteFileTool() {
  json p = json::object();
  p["path"] = Prop("string",
                   "File to write; relative paths start at the user's home. Missing parent "
                   "directories are created; an existing file is replaced.");
  p["content"] = Prop("string", "The file's content.");
  p["encoding"] = EnumProp("How content is given: \"utf-8\" text (default) or \"base64\" bytes.",
                           {"utf-8", "base64"});
  p["user"] = UserProp();
  p["sandbox_id"] = SandboxIdProp();
  return Tool("write_file", "Write file",
              "Writes a file in the sandbox (text, or bytes given as base64), creating missing "
              "parent directories.",
              Schema(p, {"path", "content"}), Annotations("Write file", false, true, true));
}

json ListDirTool() {
  json p = json::object();
  p["path"] = Prop("string", "Directory to list (default the user's home).");
  p["depth"] = IntProp("How many levels to descend (default 1: the directory's own entries).",
                       1, 10);
  p["user"] = UserProp();
  p["sandbox_id"] = SandboxIdProp();
  return Tool("list_dir", "List directory",
              "Lists a directory in the sandbox: type, size, permissions and path of each entry.",
              Schema(p, {}), Annotations("List directory", true, false, true));
}

json UploadTool() {
  json p = json::object();
  p["host_path"] = Prop("string",
                        "File on the machine running `kiln mcp` to copy (relative paths start "
                        "at its working directory).");
  p["sandbox_path"] = Prop("string",
                           "Destination in the sandbox; a directory (or a path ending in '/') "
                           "gets the file's name.");
  p["user"] = UserProp();
  p["sandbox_id"] = SandboxIdProp();
  return Tool("upload", "Upload file",
              "Copies one file from the host (where this MCP server runs) into the sandbox. "
              "For large or binary files; for text you write yourself use write_file.",
              Schema(p, {"host_path", "sandbox_path"}), Annotations("Upload file", false, true, true));
}

json DownloadTool() {
  json p = json::object();
  p["sandbox_path"] = Prop("string", "File in the sandbox to copy.");
  p["host_path"] = Prop("string",
                        "Destination on the host (where this MCP server runs); a directory gets "
                        "the file's name. An existing file is replaced.");
  p["user"] = UserProp();
  p["sandbox_id"] = SandboxIdProp();
  return Tool("download", "Download file",
              "Copies one file from the sandbox to the host (where this MCP server runs), e.g. "
              "a generated report, model or archive.",
              Schema(p, {"sandbox_path", "host_path"}), Annotations("Download file", false, true, true));
}

bool HasType(const json& value, std::string_view type) {
  if (type == "string") return value.is_string();
  if (type == "integer") {
    // 5.0 is an integer to JSON Schema.
    if (value.is_number_integer()) return true;
    if (!value.is_number_float()) return false;
    double v = value.get<double>();
    return std::isfinite(v) && std::floor(v) == v && std::fabs(v) < 9.0e15;
  }
  if (type == "number") return value.is_number();
  if (type == "boolean") return value.is_boolean();
  if (type == "object") return value.is_object();
  if (type == "array") return value.is_array();
  return true;
}

std::string Article(std::string_view type) {
  return (type == "integer" || type == "object" || type == "array") ? "an " : "a ";
}

Status CheckValue(const json& schema, const json& value, const std::string& where) {
  auto type = schema.find("type");
  if (type != schema.end() && type->is_string()) {
    const std::string& t = type->get_ref<const std::string&>();
    if (!HasType(value, t)) return Fail(Errc::kInvalidArgument, where + " must be " + Article(t) + t);
  }
  if (auto e = schema.find("enum"); e != schema.end() && e->is_array()) {
    bool found = false;
    for (const auto& option : *e) found = found || option == value;
    if (!found) {
      return Fail(Errc::kInvalidArgument, where + " must be one of " + e->dump());
    }
  }
  if (value.is_number()) {
    double v = value.get<double>();
    if (auto m = schema.find("minimum"); m != schema.end() && m->is_number() && v < m->get<double>()) {
      return Fail(Errc::kInvalidArgument, where + " must be at least " + m->dump());
    }
    if (auto m = schema.find("maximum"); m != schema.end() && m->is_number() && v > m->get<double>()) {
      return Fail(Errc::kInvalidArgument, where + " must be at most " + m->dump());
    }
  }
  if (value.is_array()) {
    if (auto items = schema.find("items"); items != schema.end() && items->is_object()) {
      for (size_t i = 0; i < value.size(); ++i) {
        KILN_TRY(CheckValue(*items, value[i], where + "[" + std::to_string(i) + "]"));
      }
    }
  }
  if (value.is_object()) {
    auto props = schema.find("properties");
    auto extra = schema.find("additionalProperties");
    for (const auto& [key, v] : value.items()) {
      std::string inner = where.empty() ? "argument \"" + key + "\"" : where + "." + key;
      if (props != schema.end() && props->contains(key)) {
        KILN_TRY(CheckValue((*props)[key], v, inner));
      } else if (extra != schema.end() && extra->is_object()) {
        KILN_TRY(CheckValue(*extra, v, inner));
      } else if (extra != schema.end() && extra->is_boolean() && !extra->get<bool>()) {
        std::string known;
        if (props != schema.end()) {
          for (const auto& [name, _] : props->items()) known += (known.empty() ? "" : ", ") + name;
        }
        return Fail(Errc::kInvalidArgument,
                    "unknown " + inner + (known.empty() ? "" : " (known: " + known + ")"));
      }
    }
    if (auto req = schema.find("required"); req != schema.end() && req->is_array()) {
      for (const auto& name : *req) {
        if (name.is_string() && !value.contains(name.get<std::string>())) {
          std::string inner = where.empty() ? "argument \"" + name.get<std::string>() + "\""
                                            : where + "." + name.get<std::string>();
          return Fail(Errc::kInvalidArgument, "missing required " + inner);
        }
      }
    }
  }
  return {};
}

}  // namespace

json ToolDefinitions(const ToolOptions& options) {
  json tools = json::array();
  tools.push_back(CreateSandboxTool(options));
  tools.push_back(ListSandboxesTool());
  tools.push_back(KillSandboxTool());
  tools.push_back(RunCodeTool());
  tools.push_back(RunCommandTool());
  tools.push_back(ReadFileTool());
  tools.push_back(WriteFileTool());
  tools.push_back(ListDirTool());
  if (options.host_files) {
    tools.push_back(UploadTool());
    tools.push_back(DownloadTool());
  }
  return tools;
}

const json* FindTool(const json& tools, std::string_view name) {
  if (!tools.is_array()) return nullptr;
  for (const auto& t : tools) {
    auto n = t.find("name");
    if (n != t.end() && n->is_string() && n->get_ref<const std::string&>() == name) return &t;
  }
  return nullptr;
}

Status CheckArguments(const json& schema, const json& args) {
  if (!args.is_object()) return Fail(Errc::kInvalidArgument, "arguments must be an object");
  return CheckValue(schema, args, "");
}

std::optional<std::string> OptString(const json& args, std::string_view name) {
  auto it = args.find(name);
  if (it == args.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::optional<int64_t> OptInt(const json& args, std::string_view name) {
  auto it = args.find(name);
  if (it == args.end()) return std::nullopt;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_float()) {
    double v = it->get<double>();
    if (std::isfinite(v) && std::fabs(v) < 9.0e15) return static_cast<int64_t>(v);
  }
  return std::nullopt;
}

std::optional<bool> OptBool(const json& args, std::string_view name) {
  auto it = args.find(name);
  if (it == args.end() || !it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

std::map<std::string, std::string> StringMap(const json& args, std::string_view name) {
  std::map<std::string, std::string> out;
  auto it = args.find(name);
  if (it == args.end() || !it->is_object()) return out;
  for (const auto& [k, v] : it->items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

std::vector<std::string> StringList(const json& args, std::string_view name) {
  std::vector<std::string> out;
  auto it = args.find(name);
  if (it == args.end() || !it->is_array()) return out;
  for (const auto& v : *it) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

}  // namespace kiln::cli::mcp
