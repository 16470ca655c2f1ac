/**
 * `struct kvm_run`: the vCPU's shared page (mmap of the vCPU fd at offset 0), x86_64 layout.
 *
 * Only the parts a VMM reads are modelled. The exit-specific union starts at
 * {@link KVM_RUN_EXIT_OFFSET}; its member codecs have offsets relative to the union, so decode them at
 * that offset: `kvm_run_io.decode(page, KVM_RUN_EXIT_OFFSET)`. Hot paths can skip the codecs and read
 * the page with a DataView at the exported offsets.
 */

import { type AnyStructCodec, bytes, array, defineStruct, pad, u16, u32, u64, u8 } from './codec.js';
import { invalidArgType, outOfRange } from './errors.js';
import { KVM_EXIT } from './constants.js';

/** `kvm_run.request_interrupt_window` (u8, in). */
export const KVM_RUN_REQUEST_INTERRUPT_WINDOW_OFFSET = 0;
/** `kvm_run.immediate_exit` (u8, in): set to make the next KVM_RUN return EINTR at once. */
export const KVM_RUN_IMMEDIATE_EXIT_OFFSET = 1;
/** `kvm_run.exit_reason` (u32, out). */
export const KVM_RUN_EXIT_REASON_OFFSET = 8;
/** `kvm_run.ready_for_interrupt_injection` (u8). */
export const KVM_RUN_READY_FOR_INTERRUPT_INJECTION_OFFSET = 12;
/** `kvm_run.if_flag` (u8). */
export const KVM_RUN_IF_FLAG_OFFSET = 13;
/** `kvm_run.flags` (u16). */
export const KVM_RUN_FLAGS_OFFSET = 14;
/** `kvm_run.cr8` (u64). */
export const KVM_RUN_CR8_OFFSET = 16;
/** `kvm_run.apic_base` (u64). */
export const KVM_RUN_APIC_BASE_OFFSET = 24;
/** Start of the exit-reason union. */
export const KVM_RUN_EXIT_OFFSET = 32;
/** Size of the exit-reason union (`char padding[256]`). */
export const KVM_RUN_EXIT_SIZE = 256;
/** `kvm_run.kvm_valid_regs` (u64). */
export const KVM_RUN_VALID_REGS_OFFSET = 288;
/** `kvm_run.kvm_dirty_regs` (u64). */
export const KVM_RUN_DIRTY_REGS_OFFSET = 296;
/** `kvm_run.s` (sync regs). */
export const KVM_RUN_SYNC_REGS_OFFSET = 304;
/** `SYNC_REGS_SIZE_BYTES`. */
export const KVM_RUN_SYNC_REGS_SIZE = 2048;
/** `sizeof(struct kvm_run)` on x86_64. The mapping is KVM_GET_VCPU_MMAP_SIZE bytes (larger: PIO/MMIO data pages follow). */
export const KVM_RUN_SIZE = 2352;

/** `kvm_run.io.*` (absolute offsets in the page). */
export const KVM_RUN_IO_DIRECTION_OFFSET = 32;
export const KVM_RUN_IO_SIZE_OFFSET = 33;
export const KVM_RUN_IO_PORT_OFFSET = 34;
export const KVM_RUN_IO_COUNT_OFFSET = 36;
/** `kvm_run.io.data_offset` (u64): where the data is, relative to the start of kvm_run. */
export const KVM_RUN_IO_DATA_OFFSET_OFFSET = 40;
/** `kvm_run.mmio.*` (absolute offsets). */
export const KVM_RUN_MMIO_PHYS_ADDR_OFFSET = 32;
export const KVM_RUN_MMIO_DATA_OFFSET = 40;
export const KVM_RUN_MMIO_LEN_OFFSET = 48;
export const KVM_RUN_MMIO_IS_WRITE_OFFSET = 52;
/** `kvm_run.hypercall.*` (absolute offsets). */
export const KVM_RUN_HYPERCALL_NR_OFFSET = 32;
export const KVM_RUN_HYPERCALL_ARGS_OFFSET = 40;
export const KVM_RUN_HYPERCALL_RET_OFFSET = 88;
export const KVM_RUN_HYPERCALL_FLAGS_OFFSET = 96;
/** `kvm_run.system_event.*` (absolute offsets). */
export const KVM_RUN_SYSTEM_EVENT_TYPE_OFFSET = 32;
export const KVM_RUN_SYSTEM_EVENT_NDATA_OFFSET = 36;
export const KVM_RUN_SYSTEM_EVENT_DATA_OFFSET = 40;
/** `kvm_run.internal.*` (absolute offsets). */
export const KVM_RUN_INTERNAL_SUBERROR_OFFSET = 32;
export const KVM_RUN_INTERNAL_NDATA_OFFSET = 36;
export const KVM_RUN_INTERNAL_DATA_OFFSET = 40;
/** `kvm_run.msr.*` (KVM_EXIT_X86_RDMSR/WRMSR; absolute offsets). `error` and, for RDMSR, `data` are the VMM's reply. */
export const KVM_RUN_MSR_ERROR_OFFSET = 32;
export const KVM_RUN_MSR_REASON_OFFSET = 40;
export const KVM_RUN_MSR_INDEX_OFFSET = 44;
export const KVM_RUN_MSR_DATA_OFFSET = 48;
/** `kvm_run.eoi.vector` (KVM_EXIT_IOAPIC_EOI; absolute offset). */
export const KVM_RUN_EOI_VECTOR_OFFSET = 32;
/** `kvm_run.fail_entry.*` (absolute offsets). */
export const KVM_RUN_FAIL_ENTRY_REASON_OFFSET = 32;
export const KVM_RUN_FAIL_ENTRY_CPU_OFFSET = 40;

/** The fixed header of `struct kvm_run` (bytes 0..31). */
export const kvm_run_header = defineStruct(
  'kvm_run',
  [
    ['request_interrupt_window', u8],
    ['immediate_exit', u8],
    ['padding1', pad(6)],
    ['exit_reason', u32],
    ['ready_for_interrupt_injection', u8],
    ['if_flag', u8],
    ['flags', u16],
    ['cr8', u64],
    ['apic_base', u64],
  ],
  { size: 32 },
);

/** `kvm_run.hw` (KVM_EXIT_UNKNOWN). */
export const kvm_run_hw = defineStruct('kvm_run.hw', [['hardware_exit_reason', u64]], { size: 8 });

/** `kvm_run.fail_entry` (KVM_EXIT_FAIL_ENTRY): the VMRUN/VMLAUNCH failure code and the host CPU. */
export const kvm_run_fail_entry = defineStruct(
  'kvm_run.fail_entry',
  [
    ['hardware_entry_failure_reason', u64],
    ['cpu', u32],
  ],
  { size: 16 },
);

/** `kvm_run.ex` (KVM_EXIT_EXCEPTION). */
export const kvm_run_ex = defineStruct(
  'kvm_run.ex',
  [
    ['exception', u32],
    ['error_code', u32],
  ],
  { size: 8 },
);

/** `kvm_run.io` (KVM_EXIT_IO): `size * count` bytes at `data_offset` from the start of kvm_run. */
export const kvm_run_io = defineStruct(
  'kvm_run.io',
  [
    ['direction', u8],
    ['size', u8],
    ['port', u16],
    ['count', u32],
    ['data_offset', u64],
  ],
  { size: 16 },
);

/** `kvm_run.mmio` (KVM_EXIT_MMIO): `len` bytes of `data` are meaningful. */
export const kvm_run_mmio = defineStruct(
  'kvm_run.mmio',
  [
    ['phys_addr', u64],
    ['data', bytes(8)],
    ['len', u32],
    ['is_write', u8],
  ],
  { size: 24 },
);

/**
 * `kvm_run.hypercall` (KVM_EXIT_HYPERCALL, e.g. KVM_HC_MAP_GPA_RANGE). `flags` (6.7+) overlays the
 * older `__u32 longmode; __u32 pad;` (bit 0 = 64-bit mode either way).
 */
export const kvm_run_hypercall = defineStruct(
  'kvm_run.hypercall',
  [
    ['nr', u64],
    ['args', array(u64, 6)],
    ['ret', u64],
    ['flags', u64],
  ],
  { size: 72 },
);

/** `kvm_run.system_event` (KVM_EXIT_SYSTEM_EVENT): `type` is a KVM_SYSTEM_EVENT_*; `ndata` entries of `data`. */
export const kvm_run_system_event = defineStruct(
  'kvm_run.system_event',
  [
    ['type', u32],
    ['ndata', u32],
    ['data', array(u64, 16)],
  ],
  { size: 136 },
);

/** `kvm_run.internal` (KVM_EXIT_INTERNAL_ERROR): `suberror` is a KVM_INTERNAL_ERROR_*. */
export const kvm_run_internal = defineStruct(
  'kvm_run.internal',
  [
    ['suberror', u32],
    ['ndata', u32],
    ['data', array(u64, 16)],
  ],
  { size: 136 },
);

/**
 * `kvm_run.msr` (KVM_EXIT_X86_RDMSR / KVM_EXIT_X86_WRMSR): `reason` is a KVM_MSR_EXIT_REASON_*;
 * the VMM writes `error` (1: inject #GP) and, for RDMSR, `data` before the next KVM_RUN.
 */
export const kvm_run_msr = defineStruct(
  'kvm_run.msr',
  [
    ['error', u8],
    ['pad', pad(7)],
    ['reason', u32],
    ['index', u32],
    ['data', u64],
  ],
  { size: 24 },
);

/** `kvm_run.eoi` (KVM_EXIT_IOAPIC_EOI, split irqchip): the vector the guest's LAPIC EOI'd. */
export const kvm_run_eoi = defineStruct('kvm_run.eoi', [['vector', u8]], { size: 1 });

/** `kvm_run.memory_fault` (6.8+, KVM_EXIT_MEMORY_FAULT): e.g. a private/shared mismatch of a guest_memfd VM. */
export const kvm_run_memory_fault = defineStruct(
  'kvm_run.memory_fault',
  [
    ['flags', u64],
    ['gpa', u64],
    ['size', u64],
  ],
  { size: 24 },
);

/** `kvm_run.kvm_valid_regs` and `kvm_dirty_regs` (decode at {@link KVM_RUN_VALID_REGS_OFFSET}). */
export const kvm_run_sync_flags = defineStruct(
  'kvm_run.sync_flags',
  [
    ['kvm_valid_regs', u64],
    ['kvm_dirty_regs', u64],
  ],
  { size: 16 },
);

/** The union member KVM fills for `exit_reason`, or null if none is modelled (HLT, SHUTDOWN, …). */
export function kvmRunExitStruct(exitReason: number): AnyStructCodec | null {
  if (typeof exitReason !== 'number') throw invalidArgType('exitReason', 'number', exitReason);
  switch (exitReason) {
    case KVM_EXIT.UNKNOWN:
      return kvm_run_hw;
    case KVM_EXIT.EXCEPTION:
      return kvm_run_ex;
    case KVM_EXIT.IO:
      return kvm_run_io;
    case KVM_EXIT.MMIO:
      return kvm_run_mmio;
    case KVM_EXIT.HYPERCALL:
      return kvm_run_hypercall;
    case KVM_EXIT.FAIL_ENTRY:
      return kvm_run_fail_entry;
    case KVM_EXIT.INTERNAL_ERROR:
      return kvm_run_internal;
    case KVM_EXIT.SYSTEM_EVENT:
      return kvm_run_system_event;
    case KVM_EXIT.MEMORY_FAULT:
      return kvm_run_memory_fault;
    case KVM_EXIT.X86_RDMSR:
    case KVM_EXIT.X86_WRMSR:
      return kvm_run_msr;
    case KVM_EXIT.IOAPIC_EOI:
      return kvm_run_eoi;
    default:
      return null;
  }
}

/** The header and, if modelled, the exit details of a kvm_run page (a convenience off the hot path). */
export function decodeKvmRun(page: Uint8Array): { header: ReturnType<typeof kvm_run_header.decode>; exit: unknown } {
  if (!(page instanceof Uint8Array)) throw invalidArgType('page', 'an instance of Uint8Array', page);
  if (page.byteLength < KVM_RUN_SIZE) throw outOfRange('page.byteLength', `>= ${KVM_RUN_SIZE}`, page.byteLength);
  const header = kvm_run_header.decode(page, 0);
  const codec = kvmRunExitStruct(header.exit_reason);
  return { header, exit: codec ? codec.decode(page, KVM_RUN_EXIT_OFFSET) : null };
}
