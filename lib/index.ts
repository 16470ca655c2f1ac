/**
 * kvm-sev: drive /dev/kvm and /dev/sev from TypeScript.
 *
 * ```ts
 * import { Kvm } from 'kvm-sev';
 * using kvm = Kvm.open();
 * using vm = kvm.createVm();
 * const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
 * const vcpu = vm.createVcpu();
 * ```
 */
export * from './backend/index.js';
export { Kvm, type KvmOpenOptions } from './kvm/kvm.js';
export { Vm, type AddMemoryOptions, type MemoryRegionOptions } from './kvm/vm.js';
export { Vcpu, type KvmRegs, type KvmSregs, type KvmFpu, type KvmXcrs, type KvmVcpuEvents, type KvmMpState, type KvmDebugregs } from './kvm/vcpu.js';
export { GuestMemory, type Address } from './kvm/guest-memory.js';
export type { VcpuExit } from './kvm/exits.js';
export { saveVcpuState, restoreVcpuState, encodeVcpuState, decodeVcpuState, type VcpuState } from './kvm/vcpu-state.js';
export { Asm16 } from './guest/asm16.js';
export { helloProgram, outLoopProgram, counterProgram, secretDemoProgram, secretDigest, COM1, type GuestProgram } from './guest/programs.js';
export { SerialPort } from './guest/serial.js';
export { setupRealMode, loadProgram } from './guest/setup.js';
export * from './sev/index.js';
export { openHost, type OpenHostOptions, type OpenedHost } from './host.js';
export { HybridBackend, type HybridOptions } from './hybrid/hybrid-backend.js';
export { handOff, takeOver, HANDOFF_VERSION, type HandOffOptions, type HandOffResult, type TakeOverOptions, type TakenOver, type SevHandoff, type EncContextMethod } from './migration/handoff.js';
export { pickEncContextMethod, sevHandoff, transferEncContext, type MethodChoice } from './migration/enc-context.js';
export { runDemo, type DemoReport, type DemoStep, type DemoOptions } from './demo/attested-launch.js';
