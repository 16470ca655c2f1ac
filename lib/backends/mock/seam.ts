/**
 * The mock's seam: everything a backend that owns real VMs (the hybrid, and its shared SEV daemon)
 * may use of the mock, and nothing else. Such a backend keeps its own KVM and attaches each VM to
 * the mock's SEV half (arch/x86/kvm/svm/sev.c's model, over the PSP firmware model) through a
 * {@link SevVmPort}; it may also put the firmware over its own memory controller.
 */
export { MockHost, type MockSevVm, type SevSnapshot } from './mock-host.js';
export type { MockHostOptions } from './options.js';
export type { KernelProfile } from './kernel/common/kernel-profile.js';
export type { ProcessorName } from './processor-option.js';
export { ExternalVcpuPort, type SevMemslot, type SevVcpuPort, type SevVmPort, type VcpuRegisterState } from './kernel/svm/sev-types.js';
export type { MemoryController, PhysRange } from './psp/api.js';
export { memoryCipher } from './psp/memory-cipher.js';
export { checkPhysRange } from './psp/phys-range.js';
