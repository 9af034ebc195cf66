#include "kilnd/template/account_files.h"

#include <algorithm>
#include <string_view>

namespace kiln::kilnd::tmpl {
namespace {

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& line : lines) out.append(line).append("\n");
  return out;
}

std::string Join(const std::vector<std::string>& fields, char sep) {
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out += sep;
    out += fields[i];
  }
  return out;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  for (;;) {
    size_t next = s.find(sep, pos);
    if (next == std::string::npos) {
      out.push_back(s.substr(pos));
      return out;
    }
    out.push_back(s.substr(pos, next - pos));
    pos = next + 1;
  }
}

// Valid like Debian's default NAME_REGEX: lower case letter or '_' first, then letters,
// digits, '_' and '-'; at most 32 bytes.
bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  if (!(name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z'))) return false;
  return std::ranges::all_of(name, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

bool ValidField(std::string_view s) { return s.find_first_of(":\n") == std::string_view::npos; }

// True if a line of the file has `name` as its 1st field or `id` as its 3rd (id < 0: skip).
bool Taken(const std::vector<std::string>& lines, const std::string& name, long id) {
  for (const std::string& line : lines) {
    std::vector<std::string> f = SplitAccountLine(line);
    if (f[0] == name) return true;
    if (id >= 0 && f.size() > 2 && f[2] == std::to_string(id)) return true;
  }
  return false;
}

struct AccountFile {
  const char* path;
  bool required;
  std::vector<std::string> lines;
  bool present = false;
};

Status Load(const RootfsTree& tree, AccountFile& file) {
  auto text = tree.ReadFile(file.path);
  if (!text) {
    if (text.error().code() == Errc::kNotFound && !file.required) return {};
    return Unexpected(std::move(text).error().Wrap("read account file"));
  }
  file.present = true;
  file.lines = SplitLines(*text);
  return {};
}

// Adds `user` to the member list of each group in `groups`; kNotFound for a missing group.
Status JoinGroups(std::vector<std::string>& lines, const std::string& user,
                  const std::vector<std::string>& groups, const char* path) {
  for (const std::string& group : groups) {
    auto it = std::ranges::find_if(
        lines, [&](const std::string& line) { return SplitAccountLine(line)[0] == group; });
    if (it == lines.end()) {
      return Fail(Errc::kNotFound, std::string(path) + ": no group '" + group + "'");
    }
    *it = AddGroupMember(*it, user);
  }
  return {};
}

}  // namespace

std::vector<std::string> SplitAccountLine(const std::string& line) { return Split(line, ':'); }

std::string AddGroupMember(const std::string& line, const std::string& user) {
  std::vector<std::string> fields = SplitAccountLine(line);
  if (fields.size() < 4) fields.resize(4);
  std::vector<std::string> members;
  if (!fields[3].empty()) members = Split(fields[3], ',');
  if (std::ranges::find(members, user) != members.end()) return line;
  members.push_back(user);
  fields[3] = Join(members, ',');
  return Join(fields, ':');
}

Status AddUser(const RootfsTree& tree, const NewUser& user) {
  if (!ValidName(user.name) || !ValidField(user.home) || !ValidField(user.shell)) {
    return Fail(Errc::kInvalidArgument, "invalid user name, home or shell for '" + user.name + "'");
  }
  AccountFile passwd{"etc/passwd", true, {}};
  AccountFile group{"etc/group", true, {}};
  AccountFile shadow{"etc/shadow", false, {}};
  AccountFile gshadow{"etc/gshadow", false, {}};
  for (AccountFile* f : {&passwd, &group, &shadow, &gshadow}) KILN_TRY(Load(tree, *f));

  const std::string& name = user.name;
  if (Taken(passwd.lines, name, user.uid) || Taken(shadow.lines, name, -1)) {
    return Fail(Errc::kAlreadyExists,
                "user '" + name + "' or uid " + std::to_string(user.uid) + " already exists");
  }
  if (Taken(group.lines, name, user.gid) || Taken(gshadow.lines, name, -1)) {
    return Fail(Errc::kAlreadyExists,
                "group '" + name + "' or gid " + std::to_string(user.gid) + " already exists");
  }
  std::string uid = std::to_string(user.uid);
  std::string gid = std::to_string(user.gid);
  passwd.lines.push_back(name + ":x:" + uid + ":" + gid + "::" + user.home + ":" + user.shell);
  group.lines.push_back(name + ":x:" + gid + ":");
  shadow.lines.push_back(name + ":!:" + std::to_string(user.last_change_day) + ":0:99999:7:::");
  gshadow.lines.push_back(name + ":!::");
  KILN_TRY(JoinGroups(group.lines, name, user.groups, group.path));
  if (gshadow.present) KILN_TRY(JoinGroups(gshadow.lines, name, user.groups, gshadow.path));

  // Groups before the passwd line that names them.
  for (AccountFile* f : {&group, &gshadow, &shadow, &passwd}) {
    if (!f->present) continue;
    KILN_TRY(tree.ReplaceFile(f->path, JoinLines(f->lines)));
  }
  return {};
}

}  // namespace kiln::kilnd::tmpl
