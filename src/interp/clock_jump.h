#pragma once

// Telling that the sandbox was restored from a memory snapshot. A restored guest's monotonic
// clock goes on from the snapshot while its wall clock is set to the host's (the agent's
// /init): the difference between the two jumps. Kernels started before the snapshot then share
// their in-process random generators with every other copy, and are reseeded.

#include <cstdint>

namespace kiln::interp {

// CLOCK_REALTIME minus CLOCK_MONOTONIC, in milliseconds.
int64_t WallMinusMonotonicMs();

class ClockJumpDetector {
 public:
  // `offset_ms` is WallMinusMonotonicMs() when the process started.
  explicit ClockJumpDetector(int64_t offset_ms) : offset_ms_(offset_ms) {}

  // Takes a new reading; a change of more than `threshold_ms` since the last one starts a new
  // generation. Returns the generation (0 until the first jump).
  uint64_t Update(int64_t offset_ms, int64_t threshold_ms = 2000);
  // Starts a new generation whatever the change (the clock is known to have been set).
  uint64_t NewGeneration(int64_t offset_ms);
  uint64_t generation() const { return generation_; }

 private:
  int64_t offset_ms_;
  uint64_t generation_ = 0;
};

}  // namespace kiln::interp
