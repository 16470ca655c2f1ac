/**
 * kvm-sev: drive /dev/kvm and /dev/sev from TypeScript. The root entry is the KVM and SEV API, the
 * backend contract and the native backend; the mock (`kvm-sev/mock`), the hybrid (`kvm-sev/hybrid`),
 * the guest owner (`kvm-sev/owner`) and the demo (`kvm-sev/demo`) load only when imported, and
 * `openHost()` loads the mock or the hybrid only when it picks one.
 *
 * ```ts
 * import { Kvm, openHost } from 'kvm-sev';
 * const host = await openHost(); // native, hybrid or mock, and why
 * using kvm = Kvm.open({ backend: host.backend });
 * using vm = kvm.createVm();
 * const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
 * const vcpu = vm.createVcpu();
 * console.log(host.name, mem.size, vcpu.id);
 * ```
 *
 * @module kvm-sev
 */
export * from './backend/index.js';
export { SevCommandTable } from './uapi/sev-command-table.js';
export { NativeBackend } from './backends/native/native-backend.js';
export { loadAddon, addonAvailable, NativeUnavailableError, packageRoot } from './backends/native/addon.js';
export { Kvm, type KvmOpenOptions } from './kvm/kvm.js';
export {
  Vm,
  type AddMemoryOptions,
  type AddRamOptions,
  type MemoryRegionOptions,
  type MemoryRegion2Options,
  type IoeventfdOptions,
  type IrqchipState,
  type KvmClockData,
  type KvmPitState2,
} from './kvm/vm.js';
export { EventFd } from './kvm/eventfd.js';
export { KvmDevice } from './kvm/device.js';
export { KvmStats, type KvmStatDesc } from './kvm/stats.js';
export {
  Vcpu,
  type KvmRegs,
  type KvmSregs,
  type KvmFpu,
  type KvmXcrs,
  type KvmVcpuEvents,
  type KvmMpState,
  type KvmDebugregs,
} from './kvm/vcpu.js';
export { GuestMemory, type Address } from './kvm/guest-memory.js';
export {
  ramLayout,
  ramEnd,
  MMIO_HOLE_START,
  MMIO_HOLE_END,
  IOAPIC_BASE,
  LAPIC_BASE,
  type RamRange,
  type RamLayoutOptions,
} from './kvm/ram-layout.js';
export type { VcpuExit } from './kvm/exits.js';
export { saveVcpuState, restoreVcpuState, encodeVcpuState, decodeVcpuState, type VcpuState } from './kvm/vcpu-state.js';
export * from './sev/index.js';
export {
  handOff,
  takeOver,
  HANDOFF_VERSION,
  type HandOffOptions,
  type HandOffResult,
  type TakeOverOptions,
  type TakenOver,
  type SevHandoff,
  type EncContextMethod,
} from './migration/handoff.js';
export { pickEncContextMethod, sevHandoff, transferEncContext, type MethodChoice } from './migration/enc-context.js';
export * from './migration/live/index.js';
export { openHost, type OpenHostOptions, type OpenedHost } from './app/open-host.js';
export {
  Asm,
  mem,
  byte,
  word,
  dword,
  qword,
  ref,
  span,
  type AsmOptions,
  type AssembledProgram,
  type BranchSize,
  type Condition,
  type Mem,
  type MemSpec,
  type Mode,
  type Ref,
} from './app/guest/asm.js';
export { Asm16 } from './app/guest/asm16.js';
export {
  helloProgram,
  outLoopProgram,
  counterProgram,
  secretDemoProgram,
  secretDigest,
  longModeEntryProgram,
  COM1,
  type GuestProgram,
} from './app/guest/programs.js';
export { SerialPort, kvmIrqLine, type SerialPortOptions, type SerialState } from './app/guest/serial.js';
export {
  setupRealMode,
  loadProgram,
  setupProtectedMode,
  setupLongMode,
  type ModeLayout,
  type ModeSetupOptions,
  type ProtectedModeOptions,
  type LongModeOptions,
} from './app/guest/setup.js';
export * as vmmPrograms from './app/guest/vmm-programs.js';
