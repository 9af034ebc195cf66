#include "kilnd/runtime/ns/linux_api.h"

#include <linux/capability.h>

namespace kiln::kilnd::ns::linux_api {

int Capset(const CapSets& sets) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  data[0].effective = static_cast<uint32_t>(sets.effective);
  data[1].effective = static_cast<uint32_t>(sets.effective >> 32);
  data[0].permitted = static_cast<uint32_t>(sets.permitted);
  data[1].permitted = static_cast<uint32_t>(sets.permitted >> 32);
  data[0].inheritable = static_cast<uint32_t>(sets.inheritable);
  data[1].inheritable = static_cast<uint32_t>(sets.inheritable >> 32);
  return static_cast<int>(syscall(SYS_capset, &header, data));
}

}  // namespace kiln::kilnd::ns::linux_api
