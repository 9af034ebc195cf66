#include "cli/command_line.h"

#include <gtest/gtest.h>

#include <map>

#include "cli/flags.h"

namespace kiln::cli {
namespace {

Environment Env(std::map<std::string, std::string> vars = {}) {
  Environment env;
  env.getenv = [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
  return env;
}

CommandLine Parse(std::vector<std::string> args, Environment env = Env()) {
  auto line = ParseCommandLine(args, env);
  EXPECT_TRUE(line.has_value()) << (line ? "" : line.error().message);
  return line ? *line : CommandLine{};
}

std::string ParseError(std::vector<std::string> args) {
  auto line = ParseCommandLine(args, Env());
  EXPECT_FALSE(line.has_value());
  return line ? "" : line.error().message;
}

TEST(FlagsTest, ValuesBooleansAndPositionals) {
  const std::array specs = {FlagSpec{"name", true, 'n'}, FlagSpec{"json", false, 0}};
  std::vector<std::string> args = {"a", "--name", "x", "-n", "y", "--json", "--name=z", "b"};
  auto f = ParseFlags(args, specs);
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_EQ(f->positional, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f->All("name"), (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_EQ(f->Get("name"), "z");
  EXPECT_TRUE(f->Has("json"));
  EXPECT_FALSE(f->Has("other"));
}

TEST(FlagsTest, UnknownFlagAndMissingValueAreErrors) {
  const std::array specs = {FlagSpec{"name", true, 0}};
  std::vector<std::string> unknown = {"--nope"};
  EXPECT_EQ(ParseFlags(unknown, specs).error().message(), "unknown flag --nope");
  std::vector<std::string> missing = {"--name"};
  EXPECT_EQ(ParseFlags(missing, specs).error().message(), "flag --name needs a value");
  const std::array bools = {FlagSpec{"json", false, 0}};
  std::vector<std::string> with_value = {"--json=1"};
  EXPECT_FALSE(ParseFlags(with_value, bools));
}

TEST(FlagsTest, DashDashAndPositionalLimitEndFlags) {
  const std::array specs = {FlagSpec{"cwd", true, 0}};
  std::vector<std::string> args = {"id", "--cwd", "/x", "ls", "-la", "--cwd"};
  auto f = ParseFlags(args, specs, ParseOptions{1});
  ASSERT_TRUE(f);
  EXPECT_EQ(f->positional, (std::vector<std::string>{"id"}));
  EXPECT_EQ(f->rest, (std::vector<std::string>{"ls", "-la", "--cwd"}));
  std::vector<std::string> dd = {"id", "--", "--cwd", "x"};
  auto g = ParseFlags(dd, specs);
  ASSERT_TRUE(g);
  EXPECT_TRUE(g->saw_dashdash);
  EXPECT_EQ(g->rest, (std::vector<std::string>{"--cwd", "x"}));
}

TEST(FlagsTest, KeyValueAndCount) {
  EXPECT_EQ(SplitKeyValue("a=b=c", "env")->second, "b=c");
  EXPECT_EQ(SplitKeyValue("a=", "env")->second, "");
  EXPECT_FALSE(SplitKeyValue("=b", "env"));
  EXPECT_FALSE(SplitKeyValue("ab", "env"));
  EXPECT_EQ(*ParseCount("300", "timeout"), 300);
  EXPECT_FALSE(ParseCount("-1", "timeout"));
  EXPECT_FALSE(ParseCount("1s", "timeout"));
  EXPECT_FALSE(ParseCount("", "timeout"));
}

TEST(CommandLineTest, GlobalsFromEnvironmentAndFlags) {
  auto line = Parse({"sandbox", "list"}, Env({{"E2B_API_URL", "http://h:1"}, {"E2B_API_KEY", "k"}}));
  EXPECT_EQ(line.global.api_url, "http://h:1");
  EXPECT_EQ(line.global.api_key, "k");
  line = Parse({"--api-url", "http://a:2", "sandbox", "list", "--api-key=x"},
               Env({{"E2B_API_KEY", "k"}}));
  EXPECT_EQ(line.global.api_url, "http://a:2");
  EXPECT_EQ(line.global.api_key, "x");
  line = Parse({"sandbox", "list"});
  EXPECT_EQ(line.global.api_url, "http://127.0.0.1:3000");
  EXPECT_EQ(line.global.api_key, "");
}

TEST(CommandLineTest, Create) {
  auto line = Parse({"sandbox", "create", "--template", "py", "--timeout", "60", "--metadata",
                     "a=1", "-m", "b=2", "--env", "X=y", "--no-internet", "--json"});
  auto* c = std::get_if<CreateCommand>(&line.command);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->template_id, "py");
  EXPECT_EQ(c->timeout_s, 60);
  EXPECT_EQ(c->metadata, (std::map<std::string, std::string>{{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(c->envs, (std::map<std::string, std::string>{{"X", "y"}}));
  EXPECT_TRUE(c->no_internet);
  EXPECT_TRUE(c->json);
  CommandLine plain = Parse({"sandbox", "create"});
  auto* d = std::get_if<CreateCommand>(&plain.command);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->template_id, "base");
  EXPECT_FALSE(d->timeout_s);
}

TEST(CommandLineTest, ListStates) {
  auto line = Parse({"sandbox", "list", "--state", "running,paused", "--metadata", "k=v"});
  auto* c = std::get_if<ListCommand>(&line.command);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->states, (std::vector<std::string>{"running", "paused"}));
  EXPECT_EQ(c->metadata.at("k"), "v");
  EXPECT_NE(ParseError({"sandbox", "list", "--state", "dead"}).find("dead"), std::string::npos);
}

TEST(CommandLineTest, ExecTakesEverythingAfterTheIdAsTheCommand) {
  auto line = Parse({"sandbox", "exec", "sbx", "--user", "root", "--cwd", "/tmp", "-e", "A=1",
                     "--", "ls", "-la", "--help"});
  auto* c = std::get_if<ExecCommand>(&line.command);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->id, "sbx");
  EXPECT_EQ(c->user, "root");
  EXPECT_EQ(c->cwd, "/tmp");
  EXPECT_EQ(c->envs.at("A"), "1");
  EXPECT_EQ(c->command, (std::vector<std::string>{"ls", "-la", "--help"}));
  // Without "--", the first word after the id starts the command.
  auto bare = Parse({"sandbox", "exec", "sbx", "ls", "-l"});
  EXPECT_EQ(std::get<ExecCommand>(bare.command).command,
            (std::vector<std::string>{"ls", "-l"}));
  EXPECT_EQ(ParseError({"sandbox", "exec", "sbx"}), "missing command");
  EXPECT_EQ(ParseError({"sandbox", "exec", "sbx", "--"}), "missing command");
}

TEST(CommandLineTest, IdCommands) {
  EXPECT_EQ(std::get<KillCommand>(Parse({"sandbox", "kill", "a", "b"}).command).ids,
            (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(std::get<PauseCommand>(Parse({"sandbox", "pause", "a"}).command).id, "a");
  auto resume = std::get<ResumeCommand>(Parse({"sandbox", "resume", "a", "--timeout", "9"}).command);
  EXPECT_EQ(resume.timeout_s, 9);
  EXPECT_TRUE(std::get<InfoCommand>(Parse({"sandbox", "info", "a", "--json"}).command).json);
  EXPECT_EQ(ParseError({"sandbox", "pause"}), "missing sandbox ID");
  EXPECT_EQ(ParseError({"sandbox", "pause", "a", "b"}), "expected exactly one sandbox ID");
  auto cp = std::get<CopyCommand>(Parse({"sandbox", "cp", "-u", "root", "a:/x", "-"}).command);
  EXPECT_EQ(cp.src, "a:/x");
  EXPECT_EQ(cp.dst, "-");
  EXPECT_EQ(cp.user, "root");
}

TEST(CommandLineTest, HelpAndUsageErrors) {
  EXPECT_NE(std::get<HelpCommand>(Parse({"--help"}).command).text.find("sandbox create"),
            std::string::npos);
  EXPECT_NE(std::get<HelpCommand>(Parse({"sandbox", "--help"}).command).text.find("exec ID"),
            std::string::npos);
  EXPECT_NE(std::get<HelpCommand>(Parse({"sandbox", "cp", "-h"}).command).text.find("ID:PATH"),
            std::string::npos);
  auto unknown = ParseCommandLine({"sandbox", "list", "--bogus"}, Env());
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message, "unknown flag --bogus");
  EXPECT_NE(unknown.error().usage.find("usage: kiln sandbox list"), std::string::npos);
  EXPECT_EQ(ParseError({"frobnicate"}), "unknown command \"frobnicate\"");
  EXPECT_EQ(ParseError({}), "missing command");
  EXPECT_EQ(ParseError({"--api-url"}), "flag --api-url needs a value");
}

TEST(CommandLineTest, KeysCreate) {
  auto c = std::get<KeysCreateCommand>(Parse({"keys", "create"}).command);
  EXPECT_EQ(c.data_dir, "/var/lib/kiln");
  c = std::get<KeysCreateCommand>(
      Parse({"keys", "create", "--data-dir", "/d", "--name", "ci"}).command);
  EXPECT_EQ(c.data_dir, "/d");
  EXPECT_EQ(c.name, "ci");
  EXPECT_FALSE(ParseCommandLine({"keys", "delete"}, Env()));
}

TEST(CommandLineTest, UpPassesKilndFlagsThrough) {
  auto up = std::get<UpCommand>(Parse({"up"}).command);
  EXPECT_EQ(up.template_dir, "/var/lib/kiln/templates");
  EXPECT_TRUE(up.build);
  EXPECT_EQ(up.kilnd_args, (std::vector<std::string>{"--data-dir", "/var/lib/kiln", "--listen",
                                                     "127.0.0.1:3000"}));
  up = std::get<UpCommand>(Parse({"up", "--data-dir=/d", "--pool-size", "4", "--listen",
                                  "0.0.0.0:9", "--no-build", "--template-dir", "/t"})
                               .command);
  EXPECT_EQ(up.data_dir, "/d");
  EXPECT_EQ(up.template_dir, "/t");
  EXPECT_FALSE(up.build);
  EXPECT_EQ(up.kilnd_args,
            (std::vector<std::string>{"--data-dir", "/d", "--listen", "0.0.0.0:9",
                                      "--template-dir", "/t", "--pool-size", "4", "--no-build"}));
  EXPECT_EQ(ParseError({"up", "--listen"}), "flag --listen needs a value");
}

}  // namespace
}  // namespace kiln::cli
