/**
 * A vCPU of the mock KVM: register state with KVM's reset values on an AMD host (svm init_vmcb,
 * kvm_vcpu_reset), stored as the kernel's own struct bytes so every GET returns what the last SET
 * put there. FPU and XSAVE share one state, as in KVM (kvm_fpu is a view of the XSAVE legacy area).
 * On VM types with protected state (SEV_ES_VM, SNP_VM), once LAUNCH_UPDATE_VMSA has run,
 * GET/SET of REGS, SREGS, FPU, XSAVE, XCRS and DEBUGREGS answer EINVAL (arch/x86/kvm/x86.c: the guest_state_protected checks);
 * on the legacy DEFAULT type with ES_INIT, FPU/XSAVE read as zeros and writes are ignored.
 */
import { KVM_GUESTDBG, KVM_MAX_XCRS } from '../../../../uapi/constants.js';
import { kvm_debugregs, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs } from '../../../../uapi/kvm-structs.js';
import { E, fail } from '../common/errno.js';
import { MSR_INDEX_LIST, resetMsrs, SUPPORTED_XCR0, type CpuidEntry } from './tables.js';
import type { VcpuRegisterState } from '../svm/sev-types.js';
import type { GuestOp, Pending } from './guest-ops.js';

export const DR6_RESET = 0xffff0ff0n;
export const DR7_RESET = 0x400n;
const EVENTS_VALID = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20;
/** KVM_VCPUEVENT_VALID_TRIPLE_FAULT */
const VALID_TRIPLE_FAULT = 0x20;
const GUESTDBG_VALID = Object.values(KVM_GUESTDBG).reduce((a, b) => a | b, 0);

function seg(selector: number, base: bigint, limit: number, type: number, s: number, present = 1) {
  return { base, limit, selector, type, present, dpl: 0, db: 0, s, l: 0, g: 0, avl: 0, unusable: present ? 0 : 1 };
}

/** The kvm_sregs of a vCPU after reset (svm_get_segment's view of init_vmcb). */
export function resetSregs(apicBase: bigint): Uint8Array {
  const data = (t = 3) => seg(0, 0n, 0xffff, t, 1);
  return kvm_sregs.encode({
    cs: seg(0xf000, 0xffff0000n, 0xffff, 0xa, 1),
    ds: data(),
    es: data(),
    fs: data(),
    gs: data(),
    ss: data(2),
    tr: seg(0, 0n, 0xffff, 0x3, 0),
    ldt: seg(0, 0n, 0xffff, 0x2, 0),
    gdt: { base: 0n, limit: 0xffff },
    idt: { base: 0n, limit: 0xffff },
    cr0: 0x60000010n,
    apic_base: apicBase,
  });
}

/** XSAVE area after reset: FCW 0x37f, MXCSR 0x1f80 (and its mask). */
function resetXsave(): Uint8Array {
  const x = new Uint8Array(4096);
  const dv = new DataView(x.buffer);
  dv.setUint16(0, 0x37f, true);
  dv.setUint32(24, 0x1f80, true);
  dv.setUint32(28, 0x2ffff, true);
  return x;
}

export class MockVcpu {
  readonly id: number;
  /** Creation order (vcpu_idx). */
  readonly index: number;
  regs = new Uint8Array(kvm_regs.size);
  sregs: Uint8Array;
  xsave = resetXsave();
  xcr0 = 1n;
  msrs: Map<number, bigint>;
  lapic: Uint8Array | undefined;
  events: Uint8Array = new Uint8Array(kvm_vcpu_events.size);
  mpState: number;
  db: bigint[] = [0n, 0n, 0n, 0n];
  dr6 = DR6_RESET;
  dr7 = DR7_RESET;
  guestDebug = 0;
  cpuid: CpuidEntry[] = [];
  /** guest_state_protected (LAUNCH_UPDATE_VMSA done). */
  protectedState = false;
  /** The VMSA page once encrypted (kernel memory). */
  vmsa: Uint8Array | undefined;

  /** Instructions a test says the guest executes next (guest-ops.ts), and what the last exit left to complete. */
  readonly guestOps: GuestOp[] = [];
  pendingExit: Pending;
  /** KVM_REQ_TRIPLE_FAULT: the next KVM_RUN exits with KVM_EXIT_SHUTDOWN. */
  tripleFault = false;
  /** The GHCB MSR of an SEV-ES guest (vmcb control->ghcb_gpa) as its last VMGEXIT left it. */
  ghcbMsr = 0n;
  /** KVM_INTERRUPT with a split irqchip: the vector waiting for the interrupt window (-1: none). */
  pendingExternalVector = -1;
  /** KVM_VCPU_TSC_OFFSET (vCPU device attribute). */
  tscOffset = 0n;
  /** The guest TSC frequency (KVM_GET/SET_TSC_KHZ). */
  tscKhz = 2_450_000;
  /** Exit counters for the binary stats (the mock's runner counts the exits it produces). */
  readonly counters = { exits: 0n, io_exits: 0n, mmio_exits: 0n, hypercalls: 0n, halt_exits: 0n, nmi_injections: 0n, irq_injections: 0n };

  constructor(id: number, index: number, irqchip: boolean, bsp = id === 0) {
    this.id = id;
    this.index = index;
    const apicBase = irqchip ? 0xfee00800n | (bsp ? 0x100n : 0n) : 0n;
    const r = new DataView(this.regs.buffer);
    r.setBigUint64(kvm_regs.offsetOf('rdx'), 0x600n, true); // no CPUID set yet: KVM's default signature
    r.setBigUint64(kvm_regs.offsetOf('rip'), 0xfff0n, true);
    r.setBigUint64(kvm_regs.offsetOf('rflags'), 0x2n, true);
    this.sregs = resetSregs(apicBase);
    this.msrs = resetMsrs(apicBase);
    this.mpState = !irqchip || bsp ? 0 : 1; // RUNNABLE, or UNINITIALIZED for APs with an in-kernel APIC
    if (irqchip) this.lapic = resetLapic(id);
  }

  state(): VcpuRegisterState {
    return {
      regs: this.regs,
      sregs: this.sregs,
      xsave: this.xsave,
      xcr0: this.xcr0,
      dr6: this.dr6,
      dr7: this.dr7,
      db: this.db,
      msrs: this.msrs,
    };
  }

  // ---- ioctls on kernel-side bytes (the caller copies from/to user memory) ----

  setRegs(b: Uint8Array): void {
    this.regs = b.slice(0, kvm_regs.size);
    const dv = new DataView(this.regs.buffer);
    const o = kvm_regs.offsetOf('rflags');
    dv.setBigUint64(o, dv.getBigUint64(o, true) | 2n, true); // X86_EFLAGS_FIXED
  }

  getFpu(): Uint8Array {
    // kvm_fpu from the FXSAVE legacy area.
    const x = this.xsave;
    const out = new Uint8Array(416);
    for (let i = 0; i < 8; i++) out.set(x.subarray(32 + 16 * i, 48 + 16 * i), 16 * i);
    out.set(x.subarray(0, 4), 128); // fcw, fsw
    out[132] = x[4]!; // ftwx
    out.set(x.subarray(6, 8), 134); // last_opcode
    out.set(x.subarray(8, 24), 136); // last_ip, last_dp
    out.set(x.subarray(160, 416), 152); // xmm0-15
    out.set(x.subarray(24, 28), 408); // mxcsr
    return out;
  }

  setFpu(f: Uint8Array): void {
    const x = this.xsave;
    for (let i = 0; i < 8; i++) x.set(f.subarray(16 * i, 16 * i + 16), 32 + 16 * i);
    x.set(f.subarray(128, 132), 0);
    x[4] = f[132]!;
    x.set(f.subarray(134, 136), 6);
    x.set(f.subarray(136, 152), 8);
    x.set(f.subarray(152, 408), 160);
    x.set(f.subarray(408, 412), 24);
  }

  setXsave(b: Uint8Array): void {
    const xstateBv = new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(512, true);
    if (xstateBv & ~SUPPORTED_XCR0) fail(E.EINVAL, 'XSTATE_BV has unsupported features');
    this.xsave = b.slice(0, 4096);
  }

  getXcrs(): Uint8Array {
    return kvm_xcrs.encode({ nr_xcrs: 1, flags: 0, xcrs: [{ xcr: 0, value: this.xcr0 }] });
  }

  setXcrs(b: Uint8Array): void {
    const x = kvm_xcrs.decode(b);
    if (x.nr_xcrs > KVM_MAX_XCRS || x.flags !== 0) fail(E.EINVAL);
    for (let i = 0; i < x.nr_xcrs; i++) {
      const e = x.xcrs[i]!;
      if (e.xcr !== 0) continue;
      const v = e.value;
      // __kvm_set_xcr: x87 always on, AVX needs SSE, only supported bits.
      if (!(v & 1n) || v & ~SUPPORTED_XCR0 || (v & 4n && !(v & 2n))) fail(E.EINVAL, 'invalid XCR0');
      this.xcr0 = v;
    }
  }

  /** KVM_GET_MSRS / KVM_SET_MSRS: stops at the first MSR it does not know; returns how many it did. */
  msrIo(entries: Uint8Array, n: number, write: boolean): number {
    const dv = new DataView(entries.buffer, entries.byteOffset, entries.byteLength);
    if (n >= 256) fail(E.E2BIG); // MAX_IO_MSRS
    for (let i = 0; i < n; i++) {
      const index = dv.getUint32(16 * i, true);
      if (!this.msrs.has(index) && !MSR_INDEX_LIST.includes(index)) return i;
      if (write) this.msrs.set(index, dv.getBigUint64(16 * i + 8, true));
      else dv.setBigUint64(16 * i + 8, this.msrs.get(index) ?? 0n, true);
    }
    return n;
  }

  /** KVM_INTERRUPT on a vCPU without an in-kernel LAPIC: kvm_queue_interrupt() (a second one replaces the first). */
  queueInterrupt(vector: number): void {
    const e = kvm_vcpu_events.decode(this.events);
    e.interrupt = { injected: 1, nr: vector, soft: 0, shadow: e.interrupt.shadow };
    this.events = kvm_vcpu_events.encode(e);
    this.counters.irq_injections++;
  }

  /** KVM_NMI: kvm_inject_nmi() (nmi_queued; at most one pending is reported). */
  queueNmi(): void {
    const e = kvm_vcpu_events.decode(this.events);
    e.nmi = { ...e.nmi, pending: 1 };
    this.events = kvm_vcpu_events.encode(e);
    this.counters.nmi_injections++;
  }

  /** The LAPIC is software-enabled (SVR bit 8) and so accepts interrupts (__apic_accept_irq()). */
  lapicEnabled(): boolean {
    return !!this.lapic && (new DataView(this.lapic.buffer, this.lapic.byteOffset).getUint32(0xf0, true) & 0x100) !== 0;
  }

  /** APIC ID as an MSI destination sees it (xAPIC: ID register bits 24-31). */
  apicId(): number {
    return this.lapic ? new DataView(this.lapic.buffer, this.lapic.byteOffset).getUint32(0x20, true) >>> 24 : this.id;
  }

  /** Sets the IRR bit of `vector` in the LAPIC page (a fixed interrupt accepted). */
  acceptInterrupt(vector: number): void {
    const dv = new DataView(this.lapic!.buffer, this.lapic!.byteOffset);
    const reg = 0x200 + (vector >>> 5) * 0x10;
    dv.setUint32(reg, dv.getUint32(reg, true) | (1 << (vector & 31)), true);
  }

  /**
   * KVM_GET_VCPU_EVENTS; with KVM_CAP_X86_TRIPLE_FAULT_EVENT enabled (`tripleFaultEvent`) it reports
   * KVM_REQ_TRIPLE_FAULT in triple_fault.pending (kvm_vcpu_ioctl_x86_get_vcpu_events()).
   */
  getEvents(tripleFaultEvent = false): Uint8Array {
    const e = kvm_vcpu_events.decode(this.events);
    const flags = 0x1 | 0x4 | 0x8 | (tripleFaultEvent ? VALID_TRIPLE_FAULT : 0);
    return kvm_vcpu_events.encode({ ...e, sipi_vector: 0, flags, triple_fault: { pending: tripleFaultEvent && this.tripleFault ? 1 : 0 } });
  }

  /** KVM_SET_VCPU_EVENTS: KVM_VCPUEVENT_VALID_TRIPLE_FAULT needs the capability, and sets or clears the request. */
  setEvents(b: Uint8Array, tripleFaultEvent = false): void {
    const e = kvm_vcpu_events.decode(b);
    if (e.flags & ~EVENTS_VALID) fail(E.EINVAL);
    if (e.flags & VALID_TRIPLE_FAULT) {
      if (!tripleFaultEvent) fail(E.EINVAL, 'KVM_CAP_X86_TRIPLE_FAULT_EVENT is not enabled');
      this.tripleFault = e.triple_fault.pending !== 0;
    }
    this.events = kvm_vcpu_events.encode({ ...e, triple_fault: { pending: 0 } });
  }

  setMpState(v: number): void {
    if (v > 10) fail(E.EINVAL);
    if ((v === 2 || v === 4) && !this.lapic) fail(E.EINVAL); // INIT/SIPI_RECEIVED need an in-kernel APIC
    this.mpState = v;
  }

  getDebugregs(): Uint8Array {
    return kvm_debugregs.encode({ db: this.db, dr6: this.dr6, dr7: this.dr7, flags: 0n });
  }

  setDebugregs(b: Uint8Array): void {
    const d = kvm_debugregs.decode(b);
    if (d.flags !== 0n) fail(E.EINVAL);
    if (d.dr6 >> 32n || d.dr7 >> 32n) fail(E.EINVAL);
    this.db = [...d.db];
    this.dr6 = d.dr6;
    this.dr7 = d.dr7;
  }

  setGuestDebug(control: number): void {
    if (control & ~GUESTDBG_VALID) fail(E.EINVAL);
    this.guestDebug = control & KVM_GUESTDBG.ENABLE ? control : 0;
  }
}

/** The local APIC page after reset: ID, version, DFR, SVR, masked LVTs. */
function resetLapic(id: number): Uint8Array {
  const p = new Uint8Array(1024);
  const dv = new DataView(p.buffer);
  dv.setUint32(0x20, id << 24, true);
  dv.setUint32(0x30, 0x50014, true);
  dv.setUint32(0xe0, 0xffffffff, true);
  dv.setUint32(0xf0, 0xff, true);
  for (const r of [0x320, 0x330, 0x340, 0x350, 0x360, 0x370]) dv.setUint32(r, 0x10000, true);
  return p;
}
