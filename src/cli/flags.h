#pragma once

// Command-line flags of the kiln CLI: "--name value", "--name=value", boolean "--name", short
// aliases ("-h"), repeated flags, positional arguments and "--". Parsing is strict: an unknown
// flag or a missing value is an error (the caller prints usage and exits 2).

#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln::cli {

struct FlagSpec {
  std::string_view name;        // without dashes: "api-url"
  bool takes_value = false;     // false: a boolean flag
  char short_name = 0;          // 'h' for -h; 0 when none
};

struct ParsedFlags {
  // Every value given, in order, per flag name; boolean flags get "" per occurrence.
  std::map<std::string, std::vector<std::string>, std::less<>> values;
  std::vector<std::string> positional;
  // Everything after the positional limit or after "--", verbatim.
  std::vector<std::string> rest;
  bool saw_dashdash = false;

  bool Has(std::string_view name) const;
  // The last value given for `name`.
  std::optional<std::string> Get(std::string_view name) const;
  // All values of a repeatable flag (empty when absent).
  std::vector<std::string> All(std::string_view name) const;
};

struct ParseOptions {
  // After this many positional arguments, everything that follows goes to `rest` (exec: the
  // sandbox id, then the command and its own flags). -1: no limit.
  int positional_limit = -1;
};

// kInvalidArgument naming the offending argument ("unknown flag --foo",
// "flag --cwd needs a value").
Result<ParsedFlags> ParseFlags(std::span<const std::string> args, std::span<const FlagSpec> specs,
                               ParseOptions options = {});

// Splits "KEY=VALUE" (the key must be non-empty); kInvalidArgument naming `flag` otherwise.
Result<std::pair<std::string, std::string>> SplitKeyValue(std::string_view text,
                                                          std::string_view flag);

// Parses a non-negative decimal integer (at most 10 digits); kInvalidArgument otherwise.
Result<int64_t> ParseCount(std::string_view text, std::string_view flag);

}  // namespace kiln::cli
