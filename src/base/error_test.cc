#include "base/error.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace kiln {
namespace {

TEST(ErrorTest, KeepsCodeMessageAndErrno) {
  Error e(Errc::kNotFound, "stat /a", ENOENT);
  EXPECT_EQ(e.code(), Errc::kNotFound);
  EXPECT_EQ(e.message(), "stat /a");
  EXPECT_EQ(e.sys_errno(), ENOENT);
}

TEST(ErrorTest, WrapPrefixesContextAndKeepsCode) {
  Error e = Error(Errc::kPermissionDenied, "mount /proc: Operation not permitted", EPERM)
                .Wrap("rootfs")
                .Wrap("create sbx abc");
  EXPECT_EQ(e.message(), "create sbx abc: rootfs: mount /proc: Operation not permitted");
  EXPECT_EQ(e.code(), Errc::kPermissionDenied);
  EXPECT_EQ(e.sys_errno(), EPERM);
}

TEST(ErrorTest, FromErrnoAppendsStrerror) {
  Error e = Error::FromErrno(ENOENT, "open /x");
  EXPECT_EQ(e.message(), "open /x: No such file or directory");
  EXPECT_EQ(e.sys_errno(), ENOENT);
}

struct ErrnoCase {
  int err;
  Errc code;
};

class ErrnoMappingTest : public testing::TestWithParam<ErrnoCase> {};

TEST_P(ErrnoMappingTest, MapsToErrc) {
  EXPECT_EQ(Error::FromErrno(GetParam().err, "x").code(), GetParam().code)
      << "errno " << GetParam().err;
}

INSTANTIATE_TEST_SUITE_P(
    AllMapped, ErrnoMappingTest,
    testing::Values(ErrnoCase{ENOENT, Errc::kNotFound}, ErrnoCase{ENOTDIR, Errc::kNotFound},
                    ErrnoCase{ESRCH, Errc::kNotFound}, ErrnoCase{EEXIST, Errc::kAlreadyExists},
                    ErrnoCase{ENOTEMPTY, Errc::kAlreadyExists},
                    ErrnoCase{EACCES, Errc::kPermissionDenied},
                    ErrnoCase{EPERM, Errc::kPermissionDenied},
                    ErrnoCase{EROFS, Errc::kPermissionDenied},
                    ErrnoCase{EINVAL, Errc::kInvalidArgument},
                    ErrnoCase{ENAMETOOLONG, Errc::kInvalidArgument},
                    ErrnoCase{EISDIR, Errc::kInvalidArgument},
                    ErrnoCase{ELOOP, Errc::kInvalidArgument},
                    ErrnoCase{EXDEV, Errc::kInvalidArgument},
                    ErrnoCase{ENOSPC, Errc::kResourceExhausted},
                    ErrnoCase{EDQUOT, Errc::kResourceExhausted},
                    ErrnoCase{EMFILE, Errc::kResourceExhausted},
                    ErrnoCase{ENFILE, Errc::kResourceExhausted},
                    ErrnoCase{ENOMEM, Errc::kResourceExhausted},
                    ErrnoCase{EAGAIN, Errc::kResourceExhausted},
                    ErrnoCase{ETIMEDOUT, Errc::kTimeout}, ErrnoCase{EIO, Errc::kInternal},
                    ErrnoCase{EBADF, Errc::kInternal}, ErrnoCase{0, Errc::kInternal}));

TEST(ErrorTest, ErrcNamesAreReadable) {
  EXPECT_EQ(ErrcName(Errc::kInvalidArgument), "invalid argument");
  EXPECT_EQ(ErrcName(Errc::kNotFound), "not found");
  EXPECT_EQ(ErrcName(Errc::kUnauthenticated), "unauthenticated");
  EXPECT_EQ(ErrcName(Errc::kInternal), "internal");
}

TEST(ErrorTest, FailAndFailErrnoBuildUnexpected) {
  Result<int> r = Fail(Errc::kTimeout, "too slow");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kTimeout);
  EXPECT_EQ(r.error().sys_errno(), 0);

  Status s = FailErrno("read", EACCES);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Errc::kPermissionDenied);
  EXPECT_EQ(s.error().sys_errno(), EACCES);
}

Result<int> Half(int v) {
  if (v % 2 != 0) return Fail(Errc::kInvalidArgument, std::to_string(v) + " is odd");
  return v / 2;
}

Result<int> Quarter(int v) {
  KILN_ASSIGN_OR_RETURN(int h, Half(v));
  KILN_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int v) {
  KILN_TRY(Half(v));
  return Status();
}

TEST(ErrorTest, AssignOrReturnPropagatesValueAndError) {
  ASSERT_TRUE(Quarter(8));
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> bad = Quarter(6);  // 6 -> 3 -> odd
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "3 is odd");
  EXPECT_EQ(bad.error().code(), Errc::kInvalidArgument);
}

TEST(ErrorTest, TryPropagatesError) {
  EXPECT_TRUE(CheckEven(4));
  Status s = CheckEven(5);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(), "5 is odd");
}

}  // namespace
}  // namespace kiln
