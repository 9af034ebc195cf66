#pragma once

// Allocation of numbered slots (the /30 networks of the sandbox subnet).

#include <cstdint>
#include <optional>
#include <vector>

namespace kiln::kilnd::net {

// Hands out slot numbers 0..size-1. Allocation is next-fit: a freed slot is reused only after
// the cursor has gone round all the others, so a slot whose veth the kernel is still tearing
// down (namespaces are destroyed asynchronously) is not handed out again at once.
// Not thread-safe.
class SlotPool {
 public:
  explicit SlotPool(uint32_t size) : used_(size, false) {}

  // A free slot, or nullopt when all are in use.
  std::optional<uint32_t> Acquire();
  // Returns `slot` to the pool. REQUIRES: it was acquired and not yet released.
  void Release(uint32_t slot);

  uint32_t size() const { return static_cast<uint32_t>(used_.size()); }
  uint32_t in_use() const { return in_use_; }

 private:
  std::vector<bool> used_;
  uint32_t next_ = 0;  // where the next search starts
  uint32_t in_use_ = 0;
};

}  // namespace kiln::kilnd::net
