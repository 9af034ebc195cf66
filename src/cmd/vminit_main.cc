// kiln-vminit: /init of the vm runtime's guest initramfs (kilnd/runtime/vm/vminit.h).
#include "kilnd/runtime/vm/vminit.h"

int main() { return kiln::kilnd::vm::VmInitMain(); }
