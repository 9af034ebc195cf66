#include "interp/clock_jump.h"

#include <time.h>

namespace kiln::interp {

namespace {

int64_t Ms(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

int64_t WallMinusMonotonicMs() { return Ms(CLOCK_REALTIME) - Ms(CLOCK_MONOTONIC); }

uint64_t ClockJumpDetector::Update(int64_t offset_ms, int64_t threshold_ms) {
  int64_t change = offset_ms - offset_ms_;
  if (change > threshold_ms || change < -threshold_ms) ++generation_;
  offset_ms_ = offset_ms;
  return generation_;
}

uint64_t ClockJumpDetector::NewGeneration(int64_t offset_ms) {
  offset_ms_ = offset_ms;
  return ++generation_;
}

}  // namespace kiln::interp
