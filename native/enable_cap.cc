// KVM_ENABLE_CAP's per-capability allowlist (enable_cap.h). Each entry's arguments were read in the
// kernel's handler: arch/x86/kvm/x86.c: kvm_vm_ioctl_enable_cap() and kvm_vcpu_ioctl_enable_cap(),
// virt/kvm/kvm_main.c: kvm_vm_ioctl_enable_cap_generic(). Left out on purpose:
// KVM_CAP_HYPERV_ENLIGHTENED_VMCS (163: args[0] is a user address the kernel writes),
// KVM_CAP_SGX_ATTRIBUTE (196: an fd this shim does not hold), KVM_CAP_DIRTY_LOG_RING* (192/223:
// pages mapped at the vCPU fd beyond kvm_run), and everything not named here.
#include "enable_cap.h"

#include "common.h"

namespace kvmsev {

static constexpr uint32_t VM = static_cast<uint32_t>(FdKind::Vm);
static constexpr uint32_t VCPU = static_cast<uint32_t>(FdKind::Vcpu);

const std::vector<EnableCapDef>& AllEnableCaps() {
  static const std::vector<EnableCapDef> caps = {
      // VM fd: flags, counts and masks in args[0] (args[1] for X86_NOTIFY_VMEXIT's window: a number).
      {116, "KVM_CAP_DISABLE_QUIRKS", VM},
      {121, "KVM_CAP_SPLIT_IRQCHIP", VM},
      {128, "KVM_CAP_MAX_VCPU_ID", VM},
      {129, "KVM_CAP_X2APIC_API", VM},
      {143, "KVM_CAP_X86_DISABLE_EXITS", VM},
      {159, "KVM_CAP_MSR_PLATFORM_INFO", VM},
      {164, "KVM_CAP_EXCEPTION_PAYLOAD", VM},
      {168, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", VM},
      {182, "KVM_CAP_HALT_POLL", VM},
      {188, "KVM_CAP_X86_USER_SPACE_MSR", VM},
      {193, "KVM_CAP_X86_BUS_LOCK_EXIT", VM},
      {201, "KVM_CAP_EXIT_HYPERCALL", VM},
      {204, "KVM_CAP_EXIT_ON_EMULATION_FAILURE", VM},
      {212, "KVM_CAP_PMU_CAPABILITY", VM},
      {213, "KVM_CAP_DISABLE_QUIRKS2", VM},
      {218, "KVM_CAP_X86_TRIPLE_FAULT_EVENT", VM},
      {219, "KVM_CAP_X86_NOTIFY_VMEXIT", VM},
      {220, "KVM_CAP_VM_DISABLE_NX_HUGE_PAGES", VM},
      // args[0] is the source VM's fd number: the shim holds that fd open for the call (ioctl.cc).
      {197, "KVM_CAP_VM_COPY_ENC_CONTEXT_FROM", VM},
      {206, "KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM", VM},
      // vCPU fd: no arguments, or a boolean in args[0].
      {123, "KVM_CAP_HYPERV_SYNIC", VCPU},
      {148, "KVM_CAP_HYPERV_SYNIC2", VCPU},
      {175, "KVM_CAP_HYPERV_DIRECT_TLBFLUSH", VCPU},
      {190, "KVM_CAP_ENFORCE_PV_FEATURE_CPUID", VCPU},
      {199, "KVM_CAP_HYPERV_ENFORCE_CPUID", VCPU},
  };
  return caps;
}

const EnableCapDef* FindEnableCap(uint32_t cap) {
  for (const EnableCapDef& d : AllEnableCaps())
    if (d.cap == cap) return &d;
  return nullptr;
}

}  // namespace kvmsev
