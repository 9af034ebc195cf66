#include "interp/clock_jump.h"

#include <gtest/gtest.h>

#include "interp/language.h"

namespace kiln::interp {
namespace {

TEST(ClockJumpDetectorTest, JumpsStartGenerationsSmallDriftDoesNot) {
  ClockJumpDetector d(1'000'000);
  EXPECT_EQ(d.Update(1'000'500), 0u);   // drift, NTP slewing
  EXPECT_EQ(d.Update(1'001'900), 0u);
  EXPECT_EQ(d.Update(1'400'000), 1u);   // restored: the wall clock set 400 s ahead
  EXPECT_EQ(d.Update(1'400'010), 1u);
  EXPECT_EQ(d.Update(1'390'000), 2u);   // set back
  EXPECT_EQ(d.generation(), 2u);
}

TEST(ClockJumpDetectorTest, AKnownClockSetStartsAGenerationWhateverItsSize) {
  ClockJumpDetector d(1'000'000);
  EXPECT_EQ(d.NewGeneration(1'001'200), 1u);  // set 1.2 s ahead: under the jump threshold
  EXPECT_EQ(d.Update(1'001'210), 1u);         // the new offset is the baseline
  EXPECT_EQ(d.Update(1'010'000), 2u);
}

TEST(ClockJumpDetectorTest, ReadsTheClocks) {
  int64_t a = WallMinusMonotonicMs();
  int64_t b = WallMinusMonotonicMs();
  EXPECT_LT(b - a, 100);
  EXPECT_GT(a, 0);
}

TEST(ReseedCodeTest, PerLanguage) {
  std::string py = ReseedCode(Language::kPython);
  EXPECT_NE(py.find("random"), std::string::npos);
  EXPECT_NE(py.find("numpy"), std::string::npos);
  EXPECT_NE(ReseedCode(Language::kBash).find("RANDOM="), std::string::npos);
  EXPECT_EQ(ReseedCode(Language::kJavaScript), kFreshJsProcess);
}

}  // namespace
}  // namespace kiln::interp
