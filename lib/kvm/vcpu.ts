/** A vCPU fd: one method per vCPU ioctl, and `run()` (see {@link Vcpu}). */
import type { Backend, BackendFd, VcpuRunHandle } from '../backend/contract.js';
import { KvmSevError } from '../backend/errors.js';
import type { ValueOf, EncodeInput } from '../uapi/codec.js';
import * as ioc from '../uapi/ioctls.js';
import {
  cpuid2Arg,
  decodeMsrs,
  kvm_debugregs,
  kvm_enable_cap,
  kvm_fpu,
  kvm_lapic_state,
  kvm_mp_state,
  kvm_msr_entry,
  kvm_regs,
  kvm_sregs,
  kvm_vcpu_events,
  kvm_xcrs,
  kvm_xsave,
  msrsArg,
  kvm_cpuid_entry2,
  kvm_guest_debug,
  type KvmMsrEntry,
  type KvmCpuidEntry2,
} from '../uapi/kvm-structs.js';
import { invalidArgType, invalidArgValue } from '../uapi/errors.js';
import type { IoctlStruct } from '../uapi/ioctl-arg.js';
import { decodeExit, type VcpuExit } from './exits.js';
import { namesEveryField, overlay } from './partial-struct.js';
import { kvm_interrupt } from '../uapi/vmm-structs.js';
import { getDeviceAttr, hasDeviceAttr, setDeviceAttr } from './device.js';
import { KvmStats } from './stats.js';
import type { Vm } from './vm.js';

export type KvmRegs = ValueOf<typeof kvm_regs>;
export type KvmSregs = ValueOf<typeof kvm_sregs>;
export type KvmFpu = ValueOf<typeof kvm_fpu>;
export type KvmXcrs = ValueOf<typeof kvm_xcrs>;
export type KvmVcpuEvents = ValueOf<typeof kvm_vcpu_events>;
export type KvmMpState = ValueOf<typeof kvm_mp_state>;
export type KvmDebugregs = ValueOf<typeof kvm_debugregs>;

interface StructLike {
  readonly name: string;
  readonly size: number;
  arg(v: object): IoctlStruct;
  decode(b: Uint8Array): unknown;
}

function wholeArea(name: string, v: unknown, size: number): void {
  if (!(v instanceof Uint8Array)) throw invalidArgType(name, 'an instance of Uint8Array', v);
  if (v.byteLength !== size)
    throw invalidArgValue(
      name,
      v,
      `must be the whole ${size}-byte area (it is ${v.byteLength}); read it with the getter, change it, write it back`,
    );
}

/**
 * A vCPU fd: one method per vCPU ioctl, and `run()`. Setters change what they name and keep the
 * rest (`setRegs({ rip })` moves RIP only). `run()` issues KVM_RUN without holding the event loop: short
 * runs inline (watched, and moved to the vCPU's own thread if they last), long ones on that thread;
 * `runSync()` blocks the calling thread instead.
 *
 * ```ts
 * import { Asm16, Kvm, NativeBackend } from 'kvm-sev';
 * using kvm = Kvm.open({ backend: new NativeBackend() }); // real KVM: the pure mock runs no guest code
 * using vm = kvm.createVm();
 * const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
 * mem.write(0x1000n, new Asm16(0x1000).movImm16('dx', 0x3f8).movImm8('al', 0x41).outDxAl().hlt().assemble());
 * using vcpu = vm.createVcpu(0);
 * vcpu.setSregs({ cs: { base: 0n, selector: 0 } }); // real mode at 0:0x1000; the rest of the reset state stays
 * vcpu.setRegs({ rip: 0x1000n, rsp: 0x8000n }); // only RIP and RSP change
 * const out = await vcpu.run(); // OUT DX, AL
 * if (out.reason === 'io') console.log(out.direction, out.port.toString(16), String.fromCharCode(out.data[0]!)); // out 3f8 A
 * const hlt = await vcpu.run();
 * console.log(hlt.reason, vcpu.getRegs().rsp); // hlt 32768n
 * ```
 */
export class Vcpu implements Disposable, AsyncDisposable {
  readonly vm: Vm;
  readonly id: number;
  readonly fd: BackendFd;
  private readonly backend: Backend;
  private runner: VcpuRunHandle | undefined;
  private runView: DataView | undefined;
  private runPage: Uint8Array | undefined;

  /** @internal use {@link Vm.createVcpu}. */
  constructor(vm: Vm, id: number, fd: BackendFd) {
    this.vm = vm;
    this.id = id;
    this.fd = fd;
    this.backend = vm.backend;
  }

  get closed(): boolean {
    return this.fd.closed;
  }

  private get(codec: StructLike, req: number): unknown {
    const a = codec.arg({});
    this.backend.ioctl(this.fd, req, a);
    return codec.decode(a.bytes);
  }

  /**
   * A partial update: KVM_SET_* takes the whole struct, so unless `value` names every field, the
   * current struct is read first (KVM_GET_*) and the named fields are laid over it. Nothing the
   * caller did not name changes.
   */
  private update<C extends StructLike>(codec: C, getReq: number, setReq: number, value: object): void {
    if (typeof value !== 'object' || value === null) throw invalidArgType(codec.name, 'object', value);
    const whole = namesEveryField(codec, value) ? value : overlay(this.get(codec, getReq), value);
    this.backend.ioctl(this.fd, setReq, codec.arg(whole as object));
  }

  /** KVM_GET_REGS: `vcpu.getRegs().rip`. */
  getRegs(): KvmRegs {
    return this.get(kvm_regs, ioc.KVM_GET_REGS) as KvmRegs;
  }
  /** KVM_SET_REGS. Registers not named keep their values (`setRegs({ rip: 0x1000n })` moves only RIP). */
  setRegs(regs: EncodeInput<typeof kvm_regs>): void {
    this.update(kvm_regs, ioc.KVM_GET_REGS, ioc.KVM_SET_REGS, regs);
  }
  /** See KVM_GET_SREGS: `vcpu.getSregs().cr0`. */
  getSregs(): KvmSregs {
    return this.get(kvm_sregs, ioc.KVM_GET_SREGS) as KvmSregs;
  }
  /** KVM_SET_SREGS. Fields not named keep their values, inside segments too (`{ cs: { base: 0n } }`). */
  setSregs(sregs: EncodeInput<typeof kvm_sregs>): void {
    this.update(kvm_sregs, ioc.KVM_GET_SREGS, ioc.KVM_SET_SREGS, sregs);
  }
  /** See KVM_GET_FPU: `vcpu.getFpu().fcw`. */
  getFpu(): KvmFpu {
    return this.get(kvm_fpu, ioc.KVM_GET_FPU) as KvmFpu;
  }
  /** KVM_SET_FPU. Fields not named keep their values. */
  setFpu(fpu: EncodeInput<typeof kvm_fpu>): void {
    this.update(kvm_fpu, ioc.KVM_GET_FPU, ioc.KVM_SET_FPU, fpu);
  }
  /** See KVM_GET_XSAVE: the raw 4 KiB XSAVE area: `const saved = vcpu.getXsave()`. */
  getXsave(): Uint8Array {
    const a = kvm_xsave.arg({});
    this.backend.ioctl(this.fd, ioc.KVM_GET_XSAVE, a);
    return a.bytes;
  }
  /** KVM_SET_XSAVE with a whole 4 KiB area (as getXsave() returns it): a shorter one would zero the rest. */
  setXsave(area: Uint8Array): void {
    wholeArea('area', area, kvm_xsave.size);
    const a = kvm_xsave.arg({});
    a.bytes.set(area);
    this.backend.ioctl(this.fd, ioc.KVM_SET_XSAVE, a);
  }
  /** See KVM_GET_XCRS: `vcpu.getXcrs().xcrs[0].value` (XCR0). */
  getXcrs(): KvmXcrs {
    return this.get(kvm_xcrs, ioc.KVM_GET_XCRS) as KvmXcrs;
  }
  /** KVM_SET_XCRS. Fields not named keep their values (array entries are updated one by one). */
  setXcrs(xcrs: EncodeInput<typeof kvm_xcrs>): void {
    this.update(kvm_xcrs, ioc.KVM_GET_XCRS, ioc.KVM_SET_XCRS, xcrs);
  }
  /** See KVM_GET_MSRS: for the given MSR indices (`vcpu.getMsrs([0x1b])`); returns the entries KVM read (it stops at the first it cannot). */
  getMsrs(indices: readonly number[]): KvmMsrEntry[] {
    const a = msrsArg(indices.map((index) => ({ index, data: 0n })));
    const n = this.backend.ioctl(this.fd, ioc.KVM_GET_MSRS, a);
    return decodeMsrs(a.bytes).entries.slice(0, n);
  }
  /** See KVM_SET_MSRS: returns how many entries KVM set: `vcpu.setMsrs([{ index: 0x1b, data }])`. */
  setMsrs(entries: readonly EncodeInput<typeof kvm_msr_entry>[]): number {
    return this.backend.ioctl(this.fd, ioc.KVM_SET_MSRS, msrsArg(entries));
  }
  /**
   * See KVM_SET_CPUID2 (remembered in {@link cpuid}, so a saved state carries it). Register values
   * may be what JS bit operations give (`ecx | (1 << 31)` is negative): they are taken as u32.
   * `vcpu.setCpuid2(kvm.supportedCpuid())`.
   */
  setCpuid2(entries: readonly EncodeInput<typeof kvm_cpuid_entry2>[]): void {
    const norm = entries.map((e) => {
      const o: Record<string, unknown> = { ...e };
      for (const k of ['function', 'index', 'flags', 'eax', 'ebx', 'ecx', 'edx']) {
        const v = o[k];
        if (typeof v === 'number' && Number.isInteger(v) && v < 0 && v >= -0x80000000) o[k] = v >>> 0;
      }
      return o;
    });
    this.backend.ioctl(this.fd, ioc.KVM_SET_CPUID2, cpuid2Arg(norm));
    this.cpuid = norm.map((e) => ({ function: 0, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, ...e }));
  }
  /** The CPUID last set with {@link setCpuid2}. */
  cpuid: KvmCpuidEntry2[] | undefined;
  /** See KVM_GET_LAPIC: the raw 1 KiB local APIC register page: `vcpu.getLapic()`. */
  getLapic(): Uint8Array {
    const a = kvm_lapic_state.arg({});
    this.backend.ioctl(this.fd, ioc.KVM_GET_LAPIC, a);
    return a.bytes;
  }
  /** KVM_SET_LAPIC with a whole 1 KiB register page (as getLapic() returns it): a shorter one would zero the rest. */
  setLapic(regs: Uint8Array): void {
    wholeArea('regs', regs, kvm_lapic_state.size);
    const a = kvm_lapic_state.arg({});
    a.bytes.set(regs);
    this.backend.ioctl(this.fd, ioc.KVM_SET_LAPIC, a);
  }
  /** See KVM_GET_VCPU_EVENTS: `vcpu.getVcpuEvents().nmi.pending`. */
  getVcpuEvents(): KvmVcpuEvents {
    return this.get(kvm_vcpu_events, ioc.KVM_GET_VCPU_EVENTS) as KvmVcpuEvents;
  }
  /** KVM_SET_VCPU_EVENTS. Fields not named keep their values (the KVM_VCPUEVENT_VALID_* flags KVM reported too). */
  setVcpuEvents(events: EncodeInput<typeof kvm_vcpu_events>): void {
    this.update(kvm_vcpu_events, ioc.KVM_GET_VCPU_EVENTS, ioc.KVM_SET_VCPU_EVENTS, events);
  }
  /** See KVM_GET_MP_STATE: `vcpu.getMpState().mp_state` (KVM_MP_STATE_*). */
  getMpState(): KvmMpState {
    return this.get(kvm_mp_state, ioc.KVM_GET_MP_STATE) as KvmMpState;
  }
  /** See KVM_SET_MP_STATE: `vcpu.setMpState({ mp_state: KVM_MP_STATE.RUNNABLE })`. */
  setMpState(state: EncodeInput<typeof kvm_mp_state>): void {
    this.update(kvm_mp_state, ioc.KVM_GET_MP_STATE, ioc.KVM_SET_MP_STATE, state);
  }
  /** See KVM_GET_DEBUGREGS: `vcpu.getDebugregs().dr7`. */
  getDebugregs(): KvmDebugregs {
    return this.get(kvm_debugregs, ioc.KVM_GET_DEBUGREGS) as KvmDebugregs;
  }
  /** KVM_SET_DEBUGREGS. Registers not named keep their values. */
  setDebugregs(regs: EncodeInput<typeof kvm_debugregs>): void {
    this.update(kvm_debugregs, ioc.KVM_GET_DEBUGREGS, ioc.KVM_SET_DEBUGREGS, regs);
  }
  /**
   * KVM_SET_GUEST_DEBUG. It has no KVM_GET counterpart: the struct is the whole request, and a field
   * not named is 0 (no control bits, no breakpoints), as in the kernel's own API.
   */
  setGuestDebug(dbg: EncodeInput<typeof kvm_guest_debug>): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_GUEST_DEBUG, kvm_guest_debug.arg(dbg));
  }
  /** See KVM_ENABLE_CAP on the vCPU: `vcpu.enableCap(cap, [arg0])`. */
  enableCap(cap: number, args: readonly bigint[] = [], flags = 0): void {
    this.backend.ioctl(this.fd, ioc.KVM_ENABLE_CAP, kvm_enable_cap.arg({ cap, flags, args: [0, 1, 2, 3].map((i) => args[i] ?? 0n) }));
  }
  /** See KVM_GET_TSC_KHZ: the guest TSC frequency in kHz. */
  tscKhz(): number {
    return this.backend.ioctl(this.fd, ioc.KVM_GET_TSC_KHZ);
  }
  /** See KVM_SET_TSC_KHZ on the vCPU (needs TSC scaling, KVM_CAP_TSC_CONTROL, to differ from the host's): `vcpu.setTscKhz(1_000_000)`. */
  setTscKhz(khz: number): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_TSC_KHZ, khz);
  }
  /** See KVM_INTERRUPT: queue external interrupt `vector` (only without an in-kernel LAPIC, or with a split irqchip): `vcpu.interrupt(0x20)`. */
  interrupt(vector: number): void {
    this.backend.ioctl(this.fd, ioc.KVM_INTERRUPT, kvm_interrupt.arg({ irq: vector }));
  }
  /** See KVM_NMI: queue an NMI: `vcpu.nmi()`. */
  nmi(): void {
    this.backend.ioctl(this.fd, ioc.KVM_NMI);
  }
  /** See KVM_KVMCLOCK_CTRL: tell the guest's kvmclock the vCPU was paused (EINVAL unless the guest enabled kvmclock). */
  kvmclockCtrl(): void {
    this.backend.ioctl(this.fd, ioc.KVM_KVMCLOCK_CTRL);
  }
  /** See KVM_SET_DEVICE_ATTR on the vCPU fd (e.g. KVM_VCPU_TSC_CTRL / KVM_VCPU_TSC_OFFSET). */
  setDeviceAttr(group: number, attr: bigint | number, value: bigint | number): void {
    setDeviceAttr(this.backend, this.fd, group, attr, value);
  }
  /** See KVM_GET_DEVICE_ATTR on the vCPU fd: `vcpu.getDeviceAttr(0, 0)` (the TSC offset). */
  getDeviceAttr(group: number, attr: bigint | number): bigint {
    return getDeviceAttr(this.backend, this.fd, group, attr);
  }
  /** See KVM_HAS_DEVICE_ATTR on the vCPU fd. */
  hasDeviceAttr(group: number, attr: bigint | number): boolean {
    return hasDeviceAttr(this.backend, this.fd, group, attr);
  }
  /** See KVM_GET_STATS_FD on the vCPU: `using s = vcpu.statsFd(); s.read().get('exits')`. */
  statsFd(): KvmStats {
    return KvmStats.open(this.backend, this.fd);
  }

  private ensureRunner(): VcpuRunHandle {
    if (this.runner && !this.runner.closed) return this.runner;
    if (this.fd.closed) throw new KvmSevError('ERR_KVM_SEV_CLOSED', `vCPU ${this.id} is closed`);
    this.runner = this.backend.createRunner(this.fd, this.vm.kvm.vcpuMmapSize());
    this.runView = new DataView(this.runner.runArea);
    this.runPage = new Uint8Array(this.runner.runArea);
    return this.runner;
  }

  /** The `kvm_run` page shared with the kernel (for fields this API does not decode). */
  get runArea(): ArrayBuffer {
    return this.ensureRunner().runArea;
  }

  /**
   * KVM_RUN without holding the event loop (native backend: inline on this thread while the guest's
   * runs are short, on the vCPU's own thread once one lasts; after 1 ms of inline runs one goes through
   * that thread so timers and I/O get their turn).
   */
  async run(): Promise<VcpuExit> {
    const runner = this.ensureRunner();
    const now = runner.runOrPromise ? runner.runOrPromise() : runner.run();
    const r = typeof now === 'number' ? now : await now;
    return r < 0 ? { reason: 'intr' } : decodeExit(this.runView!, this.runPage!);
  }

  /** KVM_RUN on this thread (for a worker thread that owns the vCPU: it blocks that thread). */
  runSync(): VcpuExit {
    const r = this.ensureRunner().runSync();
    return r < 0 ? { reason: 'intr' } : decodeExit(this.runView!, this.runPage!);
  }

  /**
   * Completes an I/O or MMIO exit the guest is still waiting on (KVM finishes it on the next
   * KVM_RUN), without running guest code: KVM_RUN with immediate_exit set. Do this before saving
   * state (Documentation/virt/kvm/api.rst, "immediate_exit").
   */
  completePendingIo(): void {
    this.ensureRunner();
    this.runView!.setUint8(1, 1); // kvm_run.immediate_exit
    const r = this.runner!.runSync();
    if (r !== -4) throw new KvmSevError('ERR_KVM_SEV_RESTORE', `KVM_RUN with immediate_exit returned ${r}, expected -EINTR`);
  }

  /** Makes a run in flight (or the next one) return with reason 'intr'. */
  kick(): void {
    this.runner?.kick();
  }

  /** Stops the run thread, unmaps kvm_run and closes the fd. Idempotent. */
  close(): void {
    this.runner?.close();
    this.runner = undefined;
    this.runView = undefined;
    this.runPage = undefined;
    this.fd.close();
    this.vm.forgetVcpu(this);
  }
  [Symbol.dispose](): void {
    this.close();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}
