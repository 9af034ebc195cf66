#include "kilnd/net/slot_pool.h"

namespace kiln::kilnd::net {

std::optional<uint32_t> SlotPool::Acquire() {
  uint32_t n = size();
  if (in_use_ == n) return std::nullopt;
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t slot = (next_ + i) % n;
    if (!used_[slot]) {
      used_[slot] = true;
      ++in_use_;
      next_ = (slot + 1) % n;
      return slot;
    }
  }
  return std::nullopt;
}

void SlotPool::Release(uint32_t slot) {
  if (slot < used_.size() && used_[slot]) {
    used_[slot] = false;
    --in_use_;
  }
}

}  // namespace kiln::kilnd::net
