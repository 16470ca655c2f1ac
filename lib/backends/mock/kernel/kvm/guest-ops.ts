/**
 * What KVM does when a guest executes certain instructions, for guests the mock cannot run: a test
 * queues the instructions' effects (`MockHost.queueGuestOps`) and KVM_RUN handles each as the kernel
 * would, exiting to user space where the kernel does and completing the instruction on the next
 * KVM_RUN from what the VMM wrote into kvm_run:
 * - VMMCALL (arch/x86/kvm/x86.c: kvm_emulate_hypercall()): KVM_HC_MAP_GPA_RANGE exits when enabled
 *   with KVM_CAP_EXIT_HYPERCALL (after its argument checks); otherwise RAX = -KVM_ENOSYS / -KVM_EINVAL.
 *   complete_hypercall_exit() puts kvm_run.hypercall.ret in RAX.
 * - RDMSR/WRMSR (kvm_msr_allowed(), kvm_msr_user_space()): a filtered MSR exits with
 *   KVM_MSR_EXIT_REASON_FILTER when that reason is enabled, else #GP; an unknown one exits with
 *   KVM_MSR_EXIT_REASON_UNKNOWN when enabled, else #GP. The reply's `error` injects #GP;
 *   RDMSR's `data` goes to EDX:EAX (complete_fast_rdmsr()).
 * - OUT (kernel_pio(), ioeventfd_write()): the in-kernel PIC takes its ports (0x20/0x21, 0xa0/0xa1,
 *   ELCR 0x4d0/0x4d1; an EOI runs the GSI's ack notifiers, see irqchip.ts), a matching ioeventfd is
 *   signalled, both without an exit; otherwise KVM_EXIT_IO with the data at the PIO page (offset 4096).
 * - taking an interrupt (with IF set, kvm_cpu_get_interrupt() → kvm_pic_read_irq()): the PIC's IRR
 *   bit moves to ISR (KVM_GET_IRQCHIP shows it; the vCPU's irq_injections stat counts it).
 * - a store to guest memory (mark_page_dirty_in_slot()): dirty-logged slots record the page;
 *   a read-only slot or no slot gives KVM_EXIT_MMIO (or signals a matching MMIO ioeventfd).
 * - a triple fault (an exception while a #DF is being delivered: kvm_multiple_exception() makes
 *   KVM_REQ_TRIPLE_FAULT): vcpu_enter_guest() turns the request into KVM_EXIT_SHUTDOWN, as it does for
 *   one a VMM set with KVM_SET_VCPU_EVENTS (KVM_CAP_X86_TRIPLE_FAULT_EVENT). The registers stay as
 *   they were (SVM's hardware SHUTDOWN intercept, shutdown_interception(), would also INIT a non-ES
 *   vCPU; the mock models the request path of arch/x86/kvm/x86.c).
 * - VMGEXIT of an SEV-ES guest with the GHCB MSR protocol (arch/x86/kvm/svm/sev.c:
 *   sev_handle_vmgexit_msr_protocol()): GHCB_MSR_TERM_REQ exits with KVM_EXIT_SYSTEM_EVENT,
 *   type KVM_SYSTEM_EVENT_SEV_TERM, ndata 1, data[0] = the GHCB MSR (reason set in bits 15:12,
 *   reason code in bits 23:16); a request KVM does not know keeps the MSR as it is and resumes the guest.
 * When the queue is empty the next KVM_RUN needs a CPU: the runner says so (ERR_KVM_SEV_MOCK_NO_EXECUTION).
 */
import { KvmSevError } from '../../../../backend/errors.js';
import { KVM_EXIT, KVM_SYSTEM_EVENT } from '../../../../uapi/constants.js';
import { kvm_regs, kvm_vcpu_events } from '../../../../uapi/kvm-structs.js';
import type { UserMemory } from '../common/user-memory.js';
import type { MockVcpu } from './vcpu.js';
import { ackGsi } from './vmm-ioctls.js';
import type { MockVm } from './vm.js';

export type GuestOp =
  | { op: 'vmmcall'; nr: bigint; args: readonly [bigint, bigint, bigint] }
  | { op: 'rdmsr'; index: number }
  | { op: 'wrmsr'; index: number; value: bigint }
  | { op: 'out'; port: number; size: 1 | 2 | 4; value: number }
  | { op: 'store'; gpa: bigint; bytes: Uint8Array }
  | { op: 'interrupt' }
  | { op: 'triple_fault' }
  /** VMGEXIT with the GHCB MSR (MSR_AMD64_SEV_ES_GHCB) holding an MSR-protocol request (bits 11:0 non-zero). */
  | { op: 'vmgexit'; ghcbMsr: bigint };

const KVM_ENOSYS = 1000n;
const KVM_EINVAL = 22n;
const PIO_DATA_OFFSET = 4096; // KVM_PIO_PAGE_OFFSET * PAGE_SIZE
const MSR_EXIT_FILTER = 4;
const MSR_EXIT_UNKNOWN = 2;
/** arch/x86/include/asm/sev-common.h: GHCB_MSR_INFO_MASK, GHCB_MSR_TERM_REQ. */
const GHCB_MSR_INFO_MASK = 0xfffn;
const GHCB_MSR_TERM_REQ = 0x100n;
/** The in-kernel PIC's ports (kvm_pic_init(): master, slave, ELCR). */
const PIC_PORTS = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1];

/** What the next KVM_RUN must complete before it goes on. */
export type Pending = 'hypercall' | 'rdmsr' | 'wrmsr' | undefined;

function setReg(v: MockVcpu, name: 'rax' | 'rbx' | 'rcx' | 'rdx', value: bigint): void {
  new DataView(v.regs.buffer).setBigUint64(kvm_regs.offsetOf(name), BigInt.asUintN(64, value), true);
}

function injectGp(v: MockVcpu): void {
  const e = kvm_vcpu_events.decode(v.events);
  e.exception = { injected: 1, nr: 13, has_error_code: 1, pending: 0, error_code: 0 };
  v.events = kvm_vcpu_events.encode(e);
}

/** kvm_msr_allowed(): the filter's answer for an access (`write`) to `index`. */
function msrAllowed(vm: MockVm, index: number, write: boolean): boolean {
  const f = vm.msrFilter;
  if (!f) return true;
  const flag = write ? 2 : 1;
  for (const r of f.ranges) {
    if (!(r.flags & flag) || index < r.base || index >= r.base + r.nmsrs) continue;
    const bit = index - r.base;
    return (r.bitmap[bit >> 3]! & (1 << (bit & 7))) !== 0;
  }
  return !f.defaultDeny;
}

/** The start of KVM_RUN: completes what the previous exit left (from the VMM's reply in kvm_run). */
export function completePending(v: MockVcpu, run: DataView): void {
  const p = v.pendingExit;
  v.pendingExit = undefined;
  if (p === 'hypercall') setReg(v, 'rax', run.getBigUint64(88, true));
  else if (p === 'rdmsr' || p === 'wrmsr') {
    if (run.getUint8(32)) return injectGp(v); // kvm_run.msr.error
    if (p === 'rdmsr') {
      const data = run.getBigUint64(48, true);
      setReg(v, 'rax', data & 0xffffffffn);
      setReg(v, 'rdx', data >> 32n);
    }
  }
}

function exitMsr(v: MockVcpu, run: DataView, write: boolean, reason: number, index: number, data: bigint): true {
  run.setUint32(8, write ? KVM_EXIT.X86_WRMSR : KVM_EXIT.X86_RDMSR, true);
  run.setUint8(32, 0);
  run.setUint32(40, reason, true);
  run.setUint32(44, index, true);
  run.setBigUint64(48, write ? data : 0n, true);
  v.pendingExit = write ? 'wrmsr' : 'rdmsr';
  return true;
}

/** Handles one op; true if it exits to user space (kvm_run filled in). */
export function step(vm: MockVm, v: MockVcpu, mem: UserMemory, run: DataView, page: Uint8Array, o: GuestOp): boolean {
  switch (o.op) {
    case 'vmmcall': {
      const [a0, a1, a2] = o.args;
      setReg(v, 'rax', o.nr);
      setReg(v, 'rbx', a0);
      setReg(v, 'rcx', a1);
      setReg(v, 'rdx', a2);
      v.counters.hypercalls++;
      if (o.nr !== 12n || !((vm.hypercallExitMask >> 12n) & 1n)) {
        setReg(v, 'rax', -KVM_ENOSYS);
        return false;
      }
      if (a0 & 0xfffn || a1 === 0n) {
        setReg(v, 'rax', -KVM_EINVAL);
        return false;
      }
      run.setUint32(8, KVM_EXIT.HYPERCALL, true);
      run.setBigUint64(32, o.nr, true);
      [a0, a1, a2].forEach((x, i) => run.setBigUint64(40 + 8 * i, x, true));
      run.setBigUint64(88, 0n, true);
      run.setBigUint64(96, 1n, true); // KVM_EXIT_HYPERCALL_LONG_MODE: the mock's guests are 64-bit
      v.pendingExit = 'hypercall';
      return true;
    }
    case 'rdmsr':
    case 'wrmsr': {
      const write = o.op === 'wrmsr';
      const value = o.op === 'wrmsr' ? o.value : 0n;
      if (!msrAllowed(vm, o.index, write)) {
        if (vm.userSpaceMsr & MSR_EXIT_FILTER) return exitMsr(v, run, write, MSR_EXIT_FILTER, o.index, value);
        injectGp(v);
        return false;
      }
      if (!v.msrs.has(o.index)) {
        if (vm.userSpaceMsr & MSR_EXIT_UNKNOWN) return exitMsr(v, run, write, MSR_EXIT_UNKNOWN, o.index, value);
        injectGp(v);
        return false;
      }
      if (write) v.msrs.set(o.index, value);
      else {
        const d = v.msrs.get(o.index)!;
        setReg(v, 'rax', d & 0xffffffffn);
        setReg(v, 'rdx', d >> 32n);
      }
      return false;
    }
    case 'out': {
      if (vm.chip && !vm.chip.split && PIC_PORTS.includes(o.port)) {
        // picdev_write(): only byte writes reach the PIC; others are dropped (no exit either way).
        if (o.size === 1) vm.chip.picWrite(o.port, o.value & 0xff, (gsi) => ackGsi(vm, gsi));
        return false;
      }
      const io = vm.ioeventfds.find(
        (x) =>
          x.pio &&
          x.addr === BigInt(o.port) &&
          (x.len === 0 || x.len === o.size) &&
          (x.datamatch === undefined || x.datamatch === BigInt(o.value)),
      );
      if (io) {
        io.eventfd.write(1n);
        return false;
      }
      run.setUint32(8, KVM_EXIT.IO, true);
      run.setUint8(32, 1); // KVM_EXIT_IO_OUT
      run.setUint8(33, o.size);
      run.setUint16(34, o.port, true);
      run.setUint32(36, 1, true);
      run.setBigUint64(40, BigInt(PIO_DATA_OFFSET), true);
      new DataView(page.buffer, page.byteOffset + PIO_DATA_OFFSET).setUint32(0, o.value >>> 0, true);
      v.counters.io_exits++;
      return true;
    }
    case 'store': {
      const s = vm.slotOfGpa(o.gpa);
      if (s && !(s.flags & 2) && o.gpa + BigInt(o.bytes.byteLength) <= s.gpa + BigInt(s.size)) {
        mem.copyToUser(s.uaddr + (o.gpa - s.gpa), o.bytes);
        vm.markDirty(o.gpa);
        return false;
      }
      const io = vm.ioeventfds.find(
        (x) => !x.pio && x.addr === o.gpa && (x.len === 0 || x.len === o.bytes.byteLength) && x.datamatch === undefined,
      );
      if (io) {
        io.eventfd.write(1n);
        return false;
      }
      run.setUint32(8, KVM_EXIT.MMIO, true);
      run.setBigUint64(32, o.gpa, true);
      page.fill(0, 40, 48);
      page.set(o.bytes.subarray(0, 8), 40);
      run.setUint32(48, Math.min(o.bytes.byteLength, 8), true);
      run.setUint8(52, 1);
      v.counters.mmio_exits++;
      return true;
    }
    case 'interrupt': {
      if (!vm.chip || vm.chip.split) throw guestOpError('no in-kernel PIC presents interrupts (KVM_CREATE_IRQCHIP)');
      if (vm.chip.picReadIrq((gsi) => ackGsi(vm, gsi)) < 0)
        throw guestOpError('the PIC presents no interrupt: a halted guest would keep waiting');
      v.counters.irq_injections++;
      return false;
    }
    case 'triple_fault':
      v.tripleFault = true; // kvm_make_request(KVM_REQ_TRIPLE_FAULT)
      return checkRequests(v, run);
    case 'vmgexit':
      return vmgexit(vm, v, run, o.ghcbMsr);
  }
}

/** vcpu_enter_guest()'s request check: KVM_REQ_TRIPLE_FAULT → KVM_EXIT_SHUTDOWN (mmio_needed cleared); true if it exits. */
export function checkRequests(v: MockVcpu, run: DataView): boolean {
  if (!v.tripleFault) return false;
  v.tripleFault = false;
  run.setUint32(8, KVM_EXIT.SHUTDOWN, true);
  return true;
}

/** sev_handle_vmgexit() for the MSR protocol (the full GHCB page protocol is not modelled). */
function vmgexit(vm: MockVm, v: MockVcpu, run: DataView, ghcbMsr: bigint): boolean {
  // VMGEXIT is REP VMMCALL: only an SEV-ES guest's exits as SVM_EXIT_VMGEXIT.
  if (!vm.sev.info.esActive) throw guestOpError('VMGEXIT exits to KVM as SVM_EXIT_VMGEXIT only in an SEV-ES guest');
  if (!(ghcbMsr & GHCB_MSR_INFO_MASK))
    throw guestOpError('the mock models the GHCB MSR protocol only (a request in bits 11:0), not a GHCB page');
  v.ghcbMsr = BigInt.asUintN(64, ghcbMsr);
  if ((ghcbMsr & GHCB_MSR_INFO_MASK) !== GHCB_MSR_TERM_REQ) return false; // "Error, keep GHCB MSR value as-is"
  run.setUint32(8, KVM_EXIT.SYSTEM_EVENT, true);
  run.setUint32(32, KVM_SYSTEM_EVENT.SEV_TERM, true);
  run.setUint32(36, 1, true); // ndata
  run.setBigUint64(40, v.ghcbMsr, true); // data[0] = control->ghcb_gpa
  return true;
}

function guestOpError(message: string): KvmSevError {
  return new KvmSevError('ERR_KVM_SEV_MOCK_GUEST_OP', `mock guest op: ${message}`);
}
