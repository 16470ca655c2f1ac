/**
 * Why KVM_RUN returned, decoded from the shared `kvm_run` page, and how a VMM answers before the
 * next KVM_RUN (KVM completes the guest's instruction from what the page holds then):
 * - port-I/O IN: write the value into `data` (a view into the page);
 * - MMIO read (`isWrite` false): write `len` bytes into `data` (kvm_run.mmio.data); KVM loads them
 *   into the guest's register when the next KVM_RUN completes the instruction;
 * - hypercall: `reply(ret)` writes kvm_run.hypercall.ret, which KVM puts in RAX (complete_hypercall_exit);
 * - RDMSR/WRMSR: `reply({ data })` (RDMSR: EDX:EAX), or `reply({ error: true })` to inject #GP;
 * - IOAPIC EOI (split irqchip): the VMM's IOAPIC clears remote IRR of the pins with `vector`.
 * Exits with nothing to answer: SHUTDOWN (a triple fault; the vCPU cannot go on until the VMM resets
 * its state), SYSTEM_EVENT (e.g. an SEV-ES guest's termination request, `sevTerm`).
 */
import { KVM_EXIT, KVM_EXIT_IO_OUT, KVM_SYSTEM_EVENT, exitReasonName, systemEventName } from '../uapi/constants.js';

const {
  IO: KVM_EXIT_IO,
  MMIO: KVM_EXIT_MMIO,
  HLT: KVM_EXIT_HLT,
  SHUTDOWN: KVM_EXIT_SHUTDOWN,
  INTR: KVM_EXIT_INTR,
  DEBUG: KVM_EXIT_DEBUG,
  HYPERCALL: KVM_EXIT_HYPERCALL,
  SYSTEM_EVENT: KVM_EXIT_SYSTEM_EVENT,
  FAIL_ENTRY: KVM_EXIT_FAIL_ENTRY,
  INTERNAL_ERROR: KVM_EXIT_INTERNAL_ERROR,
  X86_RDMSR: KVM_EXIT_X86_RDMSR,
  X86_WRMSR: KVM_EXIT_X86_WRMSR,
  IOAPIC_EOI: KVM_EXIT_IOAPIC_EOI,
} = KVM_EXIT;
/** arch/x86/include/asm/sev-common.h: the GHCB MSR protocol's termination request. */
const GHCB_MSR_TERM_REQ = 0x100n;

export type VcpuExit =
  | { reason: 'io'; direction: 'in' | 'out'; size: number; port: number; count: number; data: Uint8Array }
  | { reason: 'mmio'; physAddr: bigint; isWrite: boolean; len: number; data: Uint8Array }
  | { reason: 'hlt' }
  | { reason: 'shutdown' }
  | { reason: 'intr' }
  | { reason: 'debug' }
  | { reason: 'hypercall'; nr: bigint; args: bigint[]; flags: bigint; reply(ret: bigint): void }
  | {
      reason: 'rdmsr' | 'wrmsr';
      /** KVM_MSR_EXIT_REASON_* (FILTER: the MSR filter denied it; UNKNOWN; INVAL). */
      msrReason: number;
      index: number;
      /** WRMSR: the value written. */
      data: bigint;
      reply(r: { data?: bigint; error?: boolean }): void;
    }
  | { reason: 'ioapic_eoi'; vector: number }
  | {
      reason: 'system_event';
      /** KVM_SYSTEM_EVENT_* (kvm_run.system_event.type) and its name ('SEV_TERM', 'SHUTDOWN', …; undefined if unknown). */
      type: number;
      typeName: keyof typeof KVM_SYSTEM_EVENT | undefined;
      /** The first `ndata` entries of kvm_run.system_event.data (KVM_CAP_SYSTEM_EVENT_DATA). */
      data: bigint[];
      /**
       * kvm_run.system_event.flags, the u64 that data[0] shares: what kernels before
       * KVM_CAP_SYSTEM_EVENT_DATA (5.18) wrote, with ndata left 0.
       */
      flags: bigint;
      /**
       * SEV_TERM from the GHCB MSR protocol (data[0] is the GHCB MSR holding GHCB_MSR_TERM_REQ,
       * arch/x86/kvm/svm/sev.c: sev_handle_vmgexit_msr_protocol()): the guest's reason set
       * (GHCBData[15:12]; 0 is the GHCB specification's general set) and reason code (GHCBData[23:16]).
       * Undefined for other events, and for a termination asked through a GHCB page (data[0] is its address).
       */
      sevTerm?: { reasonSet: number; reasonCode: number };
    }
  | { reason: 'fail_entry'; hardwareEntryFailureReason: bigint; cpu: number }
  | { reason: 'internal_error'; suberror: number; data: bigint[] }
  | { reason: 'other'; exitReason: number; name: string };

/** Decodes the exit in `run` (a DataView over kvm_run); `page` is the same memory as bytes. */
export function decodeExit(run: DataView, page: Uint8Array): VcpuExit {
  const reason = run.getUint32(8, true);
  switch (reason) {
    case KVM_EXIT_IO: {
      const size = run.getUint8(33);
      const count = run.getUint32(36, true);
      const off = Number(run.getBigUint64(40, true));
      return {
        reason: 'io',
        direction: run.getUint8(32) === KVM_EXIT_IO_OUT ? 'out' : 'in',
        size,
        port: run.getUint16(34, true),
        count,
        data: page.subarray(off, off + size * count),
      };
    }
    case KVM_EXIT_MMIO:
      return {
        reason: 'mmio',
        physAddr: run.getBigUint64(32, true),
        len: run.getUint32(48, true),
        isWrite: run.getUint8(52) !== 0,
        data: page.subarray(40, 48),
      };
    case KVM_EXIT_HLT:
      return { reason: 'hlt' };
    case KVM_EXIT_SHUTDOWN:
      return { reason: 'shutdown' };
    case KVM_EXIT_INTR:
      return { reason: 'intr' };
    case KVM_EXIT_DEBUG:
      return { reason: 'debug' };
    case KVM_EXIT_HYPERCALL: {
      const args: bigint[] = [];
      for (let i = 0; i < 6; i++) args.push(run.getBigUint64(40 + 8 * i, true));
      return {
        reason: 'hypercall',
        nr: run.getBigUint64(32, true),
        args,
        flags: run.getBigUint64(96, true),
        reply: (ret) => run.setBigUint64(88, BigInt.asUintN(64, ret), true), // kvm_run.hypercall.ret
      };
    }
    case KVM_EXIT_X86_RDMSR:
    case KVM_EXIT_X86_WRMSR:
      return {
        reason: reason === KVM_EXIT_X86_RDMSR ? 'rdmsr' : 'wrmsr',
        msrReason: run.getUint32(40, true),
        index: run.getUint32(44, true),
        data: run.getBigUint64(48, true),
        reply: (r: { data?: bigint; error?: boolean }) => {
          run.setUint8(32, r.error ? 1 : 0); // kvm_run.msr.error: 1 injects #GP
          if (r.data !== undefined) run.setBigUint64(48, BigInt.asUintN(64, r.data), true);
        },
      };
    case KVM_EXIT_IOAPIC_EOI:
      return { reason: 'ioapic_eoi', vector: run.getUint8(32) };
    case KVM_EXIT_SYSTEM_EVENT: {
      const n = Math.min(run.getUint32(36, true), 16);
      const data: bigint[] = [];
      for (let i = 0; i < n; i++) data.push(run.getBigUint64(40 + 8 * i, true));
      const type = run.getUint32(32, true);
      const exit: Extract<VcpuExit, { reason: 'system_event' }> = {
        reason: 'system_event',
        type,
        typeName: systemEventName(type),
        data,
        flags: run.getBigUint64(40, true),
      };
      const msr = data[0];
      if (type === KVM_SYSTEM_EVENT.SEV_TERM && msr !== undefined && (msr & 0xfffn) === GHCB_MSR_TERM_REQ)
        exit.sevTerm = { reasonSet: Number((msr >> 12n) & 0xfn), reasonCode: Number((msr >> 16n) & 0xffn) };
      return exit;
    }
    case KVM_EXIT_FAIL_ENTRY:
      return { reason: 'fail_entry', hardwareEntryFailureReason: run.getBigUint64(32, true), cpu: run.getUint32(40, true) };
    case KVM_EXIT_INTERNAL_ERROR: {
      const n = Math.min(run.getUint32(36, true), 16);
      const data: bigint[] = [];
      for (let i = 0; i < n; i++) data.push(run.getBigUint64(40 + 8 * i, true));
      return { reason: 'internal_error', suberror: run.getUint32(32, true), data };
    }
    default:
      return { reason: 'other', exitReason: reason, name: `KVM_EXIT_${exitReasonName(reason) ?? reason}` };
  }
}
