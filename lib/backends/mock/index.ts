/**
 * `kvm-sev/mock`: a mock host implementing the backend contract, with a model of the Linux kernel
 * (KVM, kvm_amd's SEV code, the /dev/sev PSP driver) over the mock AMD Secure Processor firmware.
 * Importing it never loads the native addon.
 *
 * ```ts
 * import { Kvm, SevGuestCommands, SevPlatform } from 'kvm-sev';
 * import { MockHost } from 'kvm-sev/mock';
 * const host = new MockHost({ kernel: '7.2', processor: 'milan', trace: true });
 * using kvm = Kvm.open({ backend: host });
 * using vm = kvm.createVm();
 * await using sev = SevPlatform.open(host);
 * const cmds = new SevGuestCommands(vm, sev);
 * await cmds.init(); // KVM_SEV_INIT, answered by the mock kernel and firmware
 * console.log((await sev.platformStatus()).stateName); // INIT: KVM_SEV_INIT initialised the platform
 * ```
 *
 * **The mock AMD root, for tests.** Every mock (and hybrid) platform's certificate chain ends in
 * kvm-sev's mock AMD root, a fixed test root whose private keys ship in this package. A guest owner
 * testing against the mock trusts it with `verifyChain({ ..., extraRoots: mockAmdRoots() })`
 * (`kvm-sev/owner`); without it, verifyChain's error says that the chain is signed by the kvm-sev
 * mock root. Never trust it outside tests: it proves nothing about hardware.
 *
 * The hybrid seam. The SEV half works without the mock's own KVM: a backend that owns real VMs
 * attaches each one with `host.sev.attach(port)`, where `port` (a {@link SevVmPort}) tells the SEV
 * code the VM's type, its memory slots (guest-physical base, size and user address: the address is
 * `host.memory.addressOf(mapping) + offset`, which also registers a native GuestMapping with the
 * mock's address space), its vCPUs (register state for LAUNCH_UPDATE_VMSA, guest_debug, protected
 * state), how to mark it dead after a MOVE and, optionally, how to hold a reference for a mirror.
 * The returned {@link MockSevVm} takes KVM_MEMORY_ENCRYPT_OP / REG_REGION / UNREG_REGION with the
 * same arguments, validation, write-back and errors as `Backend.ioctl`, MOVE/COPY once the caller has
 * resolved the source fd, `touch()` for demand pinning, and `destroy()` when the VM's last reference
 * goes. /dev/sev fds come from `host.open('/dev/sev')` (their numbers are what `sev_fd` names), and
 * `new MockHost({ memory })` puts the firmware over the hybrid's plaintext memory controller.
 *
 * @module kvm-sev/mock
 */
export { MockHost, type MockSevVm, type SevSnapshot } from './mock-host.js';
export type { MockHostOptions, KernelProfile } from './options.js';
export type { TraceEntry, TraceFirmwareCall } from './trace.js';
export { MockTrace, jsonSafe } from './trace.js';
export type { SevVmPort, SevVcpuPort, SevMemslot } from './kernel/svm/sev-types.js';
export type { GuestOp } from './kernel/kvm/guest-ops.js';
export type { VcpuRegisterState } from './kernel/svm/sev-types.js';
export { buildVmsa } from './kernel/svm/vmsa.js';
export { UserMemory, type AnyMapping } from './kernel/common/user-memory.js';
export { MockMapping } from './kernel/common/mapping.js';
export { PROCESSORS, type ProcessorName } from './processor-option.js';
export type { FaultOptions, ThrottleOptions } from './kernel/ccp/sev-dev.js';
export * from './psp/index.js';
