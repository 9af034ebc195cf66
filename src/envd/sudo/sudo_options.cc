#include "envd/sudo/sudo_options.h"

#include <string_view>

namespace kiln::envd::sudo {
namespace {

enum class Opt {
  kUser,
  kGroup,
  kPreserveEnv,
  kSetHome,
  kLogin,
  kShell,
  kList,
  kValidate,
  kResetTimestamp,
  kRemoveTimestamp,
  kVersion,
  kHelp,
  kIgnored,
  kIgnoredWithArg,
  kUnsupported,
  kUnsupportedWithArg,
};

struct OptSpec {
  char short_name;        // 0: long only
  std::string_view name;  // long name without "--"; empty: short only
  Opt opt;
};

constexpr OptSpec kOptions[] = {
    {'u', "user", Opt::kUser},
    {'g', "group", Opt::kGroup},
    {'E', "preserve-env", Opt::kPreserveEnv},
    {'H', "set-home", Opt::kSetHome},
    {'i', "login", Opt::kLogin},
    {'s', "shell", Opt::kShell},
    {'l', "list", Opt::kList},
    {'v', "validate", Opt::kValidate},
    {'k', "reset-timestamp", Opt::kResetTimestamp},
    {'K', "remove-timestamp", Opt::kRemoveTimestamp},
    {'V', "version", Opt::kVersion},
    {'h', "help", Opt::kHelp},
    {'n', "non-interactive", Opt::kIgnored},
    {'S', "stdin", Opt::kIgnored},
    {'A', "askpass", Opt::kIgnored},
    {'B', "bell", Opt::kIgnored},
    {'P', "preserve-groups", Opt::kIgnored},
    {'p', "prompt", Opt::kIgnoredWithArg},
    {'b', "background", Opt::kUnsupported},
    {'e', "edit", Opt::kUnsupported},
    {'C', "close-from", Opt::kUnsupportedWithArg},
    {'D', "chdir", Opt::kUnsupportedWithArg},
    {'R', "chroot", Opt::kUnsupportedWithArg},
    {'T', "command-timeout", Opt::kUnsupportedWithArg},
    {'U', "other-user", Opt::kUnsupportedWithArg},
    {'r', "role", Opt::kUnsupportedWithArg},
    {'t', "type", Opt::kUnsupportedWithArg},
};

bool TakesArgument(Opt o) {
  return o == Opt::kUser || o == Opt::kGroup || o == Opt::kIgnoredWithArg ||
         o == Opt::kUnsupportedWithArg;
}

std::unexpected<Error> Usage(std::string message) {
  return Fail(Errc::kInvalidArgument, std::move(message));
}

std::vector<std::string> SplitCommas(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
  return out;
}

// The option letters given, for the mode checks after parsing.
struct Seen {
  bool list = false, validate = false, reset = false, remove = false, version = false, help = false;
};

class ArgParser {
 public:
  explicit ArgParser(const std::vector<std::string>& args) : args_(args) {}

  Result<SudoOptions> Parse();

 private:
  Status ParseLong(std::string_view arg);
  Status ParseShortBundle(std::string_view arg);
  // `value` is the option's argument when it takes one.
  Status Apply(const OptSpec& spec, std::string_view value, std::string_view shown);
  Result<SudoOptions> Finish();

  const std::vector<std::string>& args_;
  size_t next_ = 0;
  SudoOptions opts_;
  Seen seen_;
};

Result<SudoOptions> ArgParser::Parse() {
  while (next_ < args_.size()) {
    std::string_view arg = args_[next_];
    if (arg == "--") {
      ++next_;
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') break;  // the command (or a lone "-")
    ++next_;
    if (arg.starts_with("--")) {
      KILN_TRY(ParseLong(arg.substr(2)));
    } else {
      KILN_TRY(ParseShortBundle(arg.substr(1)));
    }
  }
  // VAR=value arguments before the command (sudo takes any with a '=' after the first byte).
  while (next_ < args_.size()) {
    const std::string& a = args_[next_];
    size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0) break;
    opts_.assignments.push_back(a);
    ++next_;
  }
  opts_.command.assign(args_.begin() + static_cast<std::ptrdiff_t>(next_), args_.end());
  return Finish();
}

Status ArgParser::ParseLong(std::string_view arg) {
  std::string_view name = arg.substr(0, arg.find('='));
  std::optional<std::string_view> inline_value;
  if (name.size() < arg.size()) inline_value = arg.substr(name.size() + 1);
  for (const OptSpec& spec : kOptions) {
    if (spec.name != name) continue;
    std::string shown = "--" + std::string(name);
    // --preserve-env takes an optional list, only in the "=" form.
    if (spec.opt == Opt::kPreserveEnv) {
      if (inline_value) {
        for (std::string& n : SplitCommas(*inline_value)) opts_.preserve_names.push_back(n);
        return {};
      }
      return Apply(spec, "", shown);
    }
    if (!TakesArgument(spec.opt)) {
      if (inline_value) return Usage("option '" + shown + "' doesn't allow an argument");
      return Apply(spec, "", shown);
    }
    if (inline_value) return Apply(spec, *inline_value, shown);
    if (next_ >= args_.size()) return Usage("option '" + shown + "' requires an argument");
    return Apply(spec, args_[next_++], shown);
  }
  return Usage("unrecognized option '--" + std::string(arg) + "'");
}

Status ArgParser::ParseShortBundle(std::string_view bundle) {
  for (size_t k = 0; k < bundle.size(); ++k) {
    char c = bundle[k];
    const OptSpec* spec = nullptr;
    for (const OptSpec& s : kOptions) {
      if (s.short_name == c) spec = &s;
    }
    if (spec == nullptr) return Usage(std::string("invalid option -- '") + c + "'");
    std::string shown = std::string("-") + c;
    if (!TakesArgument(spec->opt)) {
      KILN_TRY(Apply(*spec, "", shown));
      continue;
    }
    // The rest of the bundle is the argument ("-unobody"), else the next argument.
    if (k + 1 < bundle.size()) return Apply(*spec, bundle.substr(k + 1), shown);
    if (next_ >= args_.size()) {
      return Usage(std::string("option requires an argument -- '") + c + "'");
    }
    return Apply(*spec, args_[next_++], shown);
  }
  return {};
}

Status ArgParser::Apply(const OptSpec& spec, std::string_view value, std::string_view shown) {
  switch (spec.opt) {
    case Opt::kUser:
      if (value.empty()) return Usage("unknown user ");
      opts_.user = std::string(value);
      break;
    case Opt::kGroup:
      if (value.empty()) return Usage("unknown group ");
      opts_.group = std::string(value);
      break;
    case Opt::kPreserveEnv:
      opts_.preserve_env = true;
      break;
    case Opt::kSetHome:
      opts_.set_home = true;
      break;
    case Opt::kLogin:
      opts_.login = true;
      break;
    case Opt::kShell:
      opts_.shell = true;
      break;
    case Opt::kList:
      seen_.list = true;
      break;
    case Opt::kValidate:
      seen_.validate = true;
      break;
    case Opt::kResetTimestamp:
      seen_.reset = true;
      break;
    case Opt::kRemoveTimestamp:
      seen_.remove = true;
      break;
    case Opt::kVersion:
      seen_.version = true;
      break;
    case Opt::kHelp:
      seen_.help = true;
      break;
    case Opt::kIgnored:
    case Opt::kIgnoredWithArg:
      break;
    case Opt::kUnsupported:
    case Opt::kUnsupportedWithArg:
      return Usage("the " + std::string(shown) + " option is not supported in this sandbox");
  }
  return {};
}

Result<SudoOptions> ArgParser::Finish() {
  int modes = int(seen_.list) + int(seen_.validate) + int(seen_.remove) + int(seen_.version) +
              int(seen_.help) + int(opts_.login || opts_.shell);
  if (opts_.login && opts_.shell) {
    return Usage("you may not specify both the -i and -s options");
  }
  if (modes > 1) {
    return Usage("Only one of the -e, -h, -i, -K, -l, -s, -v or -V options may be specified");
  }
  const bool has_command = !opts_.command.empty();
  if (seen_.help) {
    opts_.action = SudoAction::kHelp;
  } else if (seen_.version) {
    opts_.action = SudoAction::kVersion;
  } else if (seen_.list) {
    opts_.action = SudoAction::kList;
  } else if (seen_.validate || seen_.remove) {
    if (has_command || !opts_.assignments.empty()) return Usage("");
    opts_.action = SudoAction::kNoop;
  } else if (!has_command && !opts_.login && !opts_.shell) {
    // `sudo -k` alone only drops the (nonexistent) timestamp; a bare `sudo` is a usage error.
    if (!seen_.reset || !opts_.assignments.empty()) return Usage("");
    opts_.action = SudoAction::kNoop;
  }
  return std::move(opts_);
}

}  // namespace

Result<SudoOptions> ParseSudoArgs(const std::vector<std::string>& args) {
  ArgParser parser(args);
  return parser.Parse();
}

std::string SudoUsage() {
  return "usage: sudo -h | -K | -k | -V\n"
         "usage: sudo -v [-knS] [-g group] [-u user]\n"
         "usage: sudo -l [-knS] [-g group] [-u user] [command [arg ...]]\n"
         "usage: sudo [-EHknS] [-g group] [-u user] [VAR=value] [-i | -s] [command [arg ...]]\n";
}

}  // namespace kiln::envd::sudo
