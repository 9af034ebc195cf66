#include "cli/flags.h"

#include <charconv>

namespace kiln::cli {

bool ParsedFlags::Has(std::string_view name) const { return values.find(name) != values.end(); }

std::optional<std::string> ParsedFlags::Get(std::string_view name) const {
  auto it = values.find(name);
  if (it == values.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> ParsedFlags::All(std::string_view name) const {
  auto it = values.find(name);
  return it == values.end() ? std::vector<std::string>{} : it->second;
}

namespace {

const FlagSpec* FindLong(std::span<const FlagSpec> specs, std::string_view name) {
  for (const auto& s : specs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const FlagSpec* FindShort(std::span<const FlagSpec> specs, char c) {
  for (const auto& s : specs) {
    if (s.short_name != 0 && s.short_name == c) return &s;
  }
  return nullptr;
}

bool IsFlag(std::string_view arg) { return arg.size() >= 2 && arg[0] == '-'; }

}  // namespace

Result<ParsedFlags> ParseFlags(std::span<const std::string> args, std::span<const FlagSpec> specs,
                               ParseOptions options) {
  ParsedFlags out;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--") {
      out.saw_dashdash = true;
      out.rest.assign(args.begin() + static_cast<ptrdiff_t>(i) + 1, args.end());
      return out;
    }
    if (!IsFlag(arg)) {
      if (options.positional_limit >= 0 &&
          out.positional.size() >= static_cast<size_t>(options.positional_limit)) {
        out.rest.assign(args.begin() + static_cast<ptrdiff_t>(i), args.end());
        return out;
      }
      out.positional.emplace_back(arg);
      continue;
    }
    const FlagSpec* spec = nullptr;
    std::optional<std::string_view> inline_value;
    if (arg[1] == '-') {
      std::string_view name = arg.substr(2);
      size_t eq = name.find('=');
      if (eq != std::string_view::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      spec = FindLong(specs, name);
    } else if (arg.size() == 2) {
      spec = FindShort(specs, arg[1]);
    }
    if (spec == nullptr) return Fail(Errc::kInvalidArgument, "unknown flag " + std::string(arg));
    std::string key(spec->name);
    if (!spec->takes_value) {
      if (inline_value) {
        return Fail(Errc::kInvalidArgument, "flag --" + key + " takes no value");
      }
      out.values[key].emplace_back();
      continue;
    }
    if (inline_value) {
      out.values[key].emplace_back(*inline_value);
      continue;
    }
    if (i + 1 >= args.size()) {
      return Fail(Errc::kInvalidArgument, "flag --" + key + " needs a value");
    }
    out.values[key].push_back(args[++i]);
  }
  return out;
}

Result<std::pair<std::string, std::string>> SplitKeyValue(std::string_view text,
                                                          std::string_view flag) {
  size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return Fail(Errc::kInvalidArgument,
                "--" + std::string(flag) + " wants KEY=VALUE, got \"" + std::string(text) + "\"");
  }
  return std::pair<std::string, std::string>(std::string(text.substr(0, eq)),
                                             std::string(text.substr(eq + 1)));
}

Result<int64_t> ParseCount(std::string_view text, std::string_view flag) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || text.size() > 10 || ec != std::errc() || ptr != text.data() + text.size() ||
      v < 0) {
    return Fail(Errc::kInvalidArgument, "--" + std::string(flag) +
                                            " wants a non-negative integer, got \"" +
                                            std::string(text) + "\"");
  }
  return v;
}

}  // namespace kiln::cli
