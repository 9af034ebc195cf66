#include "envd/sudo/sudo_options.h"

#include <gtest/gtest.h>

namespace kiln::envd::sudo {
namespace {

using Args = std::vector<std::string>;

SudoOptions MustParse(const Args& args) {
  auto r = ParseSudoArgs(args);
  EXPECT_TRUE(r) << r.error().message();
  return r ? *r : SudoOptions{};
}

std::string ErrorOf(const Args& args) {
  auto r = ParseSudoArgs(args);
  EXPECT_FALSE(r);
  return r ? "" : r.error().message();
}

TEST(SudoOptionsTest, PlainCommandRunsAsDefault) {
  SudoOptions o = MustParse({"id", "-u"});
  EXPECT_EQ(o.action, SudoAction::kRun);
  EXPECT_EQ(o.command, (Args{"id", "-u"}));
  EXPECT_FALSE(o.user);
  EXPECT_FALSE(o.preserve_env);
}

TEST(SudoOptionsTest, OptionsStopAtTheCommand) {
  SudoOptions o = MustParse({"-u", "nobody", "ls", "-l", "-u"});
  EXPECT_EQ(o.user, "nobody");
  EXPECT_EQ(o.command, (Args{"ls", "-l", "-u"}));
}

TEST(SudoOptionsTest, DoubleDashEndsOptions) {
  SudoOptions o = MustParse({"-E", "--", "-weird-command", "x"});
  EXPECT_TRUE(o.preserve_env);
  EXPECT_EQ(o.command, (Args{"-weird-command", "x"}));
}

TEST(SudoOptionsTest, BundledShortOptionsAndAttachedArgument) {
  SudoOptions o = MustParse({"-EHu", "nobody", "true"});
  EXPECT_TRUE(o.preserve_env);
  EXPECT_TRUE(o.set_home);
  EXPECT_EQ(o.user, "nobody");
  o = MustParse({"-unobody", "-g#27", "true"});
  EXPECT_EQ(o.user, "nobody");
  EXPECT_EQ(o.group, "#27");
}

TEST(SudoOptionsTest, LongOptions) {
  SudoOptions o = MustParse({"--user=nobody", "--group", "sudo", "--set-home", "--login"});
  EXPECT_EQ(o.user, "nobody");
  EXPECT_EQ(o.group, "sudo");
  EXPECT_TRUE(o.set_home);
  EXPECT_TRUE(o.login);
  EXPECT_TRUE(o.command.empty());
  EXPECT_EQ(o.action, SudoAction::kRun);
}

TEST(SudoOptionsTest, PreserveEnvWithAListKeepsOnlyThoseNames) {
  SudoOptions o = MustParse({"--preserve-env=FOO,BAR", "env"});
  EXPECT_FALSE(o.preserve_env);
  EXPECT_EQ(o.preserve_names, (Args{"FOO", "BAR"}));
  EXPECT_TRUE(MustParse({"--preserve-env", "env"}).preserve_env);
}

TEST(SudoOptionsTest, AssignmentsBeforeTheCommand) {
  SudoOptions o = MustParse({"-E", "FOO=bar", "X=", "env", "Y=z"});
  EXPECT_EQ(o.assignments, (Args{"FOO=bar", "X="}));
  EXPECT_EQ(o.command, (Args{"env", "Y=z"}));
}

TEST(SudoOptionsTest, IgnoredOptionsAreAccepted) {
  SudoOptions o = MustParse({"-n", "-S", "-A", "-B", "-P", "-p", "pw:", "--prompt=x", "true"});
  EXPECT_EQ(o.command, (Args{"true"}));
  EXPECT_EQ(MustParse({"-nu", "root", "true"}).user, "root");
}

TEST(SudoOptionsTest, ShellAndLoginWithoutCommand) {
  EXPECT_TRUE(MustParse({"-i"}).login);
  EXPECT_TRUE(MustParse({"-s"}).shell);
  EXPECT_EQ(MustParse({"-s"}).action, SudoAction::kRun);
}

TEST(SudoOptionsTest, TimestampOptionsAreNoops) {
  EXPECT_EQ(MustParse({"-k"}).action, SudoAction::kNoop);
  EXPECT_EQ(MustParse({"-K"}).action, SudoAction::kNoop);
  EXPECT_EQ(MustParse({"-v"}).action, SudoAction::kNoop);
  EXPECT_EQ(MustParse({"--validate"}).action, SudoAction::kNoop);
  // -k with a command runs it.
  SudoOptions o = MustParse({"-k", "id"});
  EXPECT_EQ(o.action, SudoAction::kRun);
  EXPECT_EQ(o.command, (Args{"id"}));
}

TEST(SudoOptionsTest, ListVersionHelp) {
  EXPECT_EQ(MustParse({"-l"}).action, SudoAction::kList);
  SudoOptions l = MustParse({"-l", "id", "-u"});
  EXPECT_EQ(l.action, SudoAction::kList);
  EXPECT_EQ(l.command, (Args{"id", "-u"}));
  EXPECT_EQ(MustParse({"-V"}).action, SudoAction::kVersion);
  EXPECT_EQ(MustParse({"-h"}).action, SudoAction::kHelp);
  EXPECT_EQ(MustParse({"--help"}).action, SudoAction::kHelp);
}

TEST(SudoOptionsTest, UsageErrors) {
  EXPECT_EQ(ErrorOf({}), "");  // a bare sudo: usage only
  EXPECT_EQ(ErrorOf({"-E"}), "");
  EXPECT_EQ(ErrorOf({"FOO=bar"}), "");
  EXPECT_EQ(ErrorOf({"-x", "id"}), "invalid option -- 'x'");
  EXPECT_EQ(ErrorOf({"-u"}), "option requires an argument -- 'u'");
  EXPECT_EQ(ErrorOf({"--user"}), "option '--user' requires an argument");
  EXPECT_EQ(ErrorOf({"--frobnicate", "id"}), "unrecognized option '--frobnicate'");
  EXPECT_EQ(ErrorOf({"--login=yes"}), "option '--login' doesn't allow an argument");
  EXPECT_EQ(ErrorOf({"-i", "-s"}), "you may not specify both the -i and -s options");
  EXPECT_NE(ErrorOf({"-l", "-V"}).find("Only one of"), std::string::npos);
  EXPECT_EQ(ErrorOf({"-v", "id"}), "");
  EXPECT_EQ(ErrorOf({"-K", "id"}), "");
}

TEST(SudoOptionsTest, UnsupportedOptionsAreRefused) {
  for (const char* opt : {"-b", "-e", "-D", "-R", "-T", "-C", "-U", "-r", "-t"}) {
    EXPECT_NE(ErrorOf({opt, "x", "id"}).find("not supported"), std::string::npos) << opt;
  }
}

TEST(SudoOptionsTest, UsageNamesTheSupportedForms) {
  EXPECT_NE(SudoUsage().find("usage: sudo -h | -K | -k | -V"), std::string::npos);
  EXPECT_NE(SudoUsage().find("[-i | -s]"), std::string::npos);
}

}  // namespace
}  // namespace kiln::envd::sudo
