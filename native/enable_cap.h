// KVM_ENABLE_CAP's allowlist: per capability, with the fd kinds that take it. kvm_enable_cap has no
// pointer fields the shim knows of, yet some capabilities read or write a user address in args[]
// (on Intel, KVM_CAP_HYPERV_ENLIGHTENED_VMCS writes the eVMCS version to args[0]): only those whose
// arguments are plain numbers (or, for MOVE/COPY_ENC_CONTEXT_FROM, an fd number) pass.
#pragma once

#include <cstdint>
#include <vector>

namespace kvmsev {

struct EnableCapDef {
  uint32_t cap;
  const char* name;
  uint32_t fdKinds;  // FdKind bit mask
};

const EnableCapDef* FindEnableCap(uint32_t cap);
const std::vector<EnableCapDef>& AllEnableCaps();

}  // namespace kvmsev
