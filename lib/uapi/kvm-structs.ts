/**
 * Generic KVM structs of `<linux/kvm.h>` and x86 `<asm/kvm.h>` (x86_64 layouts).
 *
 * Reserved and padding members are declared with `pad()` under their kernel names, so layouts can be
 * checked against `offsetof` and the values stay free of them.
 */

import {
  type EncodeInput,
  type ValueOf,
  type VariableLayout,
  array,
  bytes,
  decodeArray,
  defineStruct,
  encodeArray,
  pad,
  ptr,
  struct,
  u16,
  u32,
  u64,
  u8,
} from './codec.js';
import { invalidArgType, outOfRange } from './errors.js';
import { type IoctlStruct, ioctlStruct } from './ioctl-arg.js';
import { KVM_APIC_REG_SIZE, KVM_MAX_XCRS } from './constants.js';

/** A bare `__u64` passed by pointer (KVM_SET_IDENTITY_MAP_ADDR's argument). */
export const u64_value = defineStruct('__u64', [['value', u64]], { size: 8 });

/** `struct kvm_userspace_memory_region` (KVM_SET_USER_MEMORY_REGION). `userspace_addr` must be guest memory. */
export const kvm_userspace_memory_region = defineStruct(
  'kvm_userspace_memory_region',
  [
    ['slot', u32],
    ['flags', u32],
    ['guest_phys_addr', u64],
    ['memory_size', u64],
    ['userspace_addr', ptr({ len: 'memory_size', retained: true })],
  ],
  { size: 32 },
);

/** `struct kvm_userspace_memory_region2` (6.8+, KVM_SET_USER_MEMORY_REGION2): adds a guest_memfd binding. */
export const kvm_userspace_memory_region2 = defineStruct(
  'kvm_userspace_memory_region2',
  [
    ['slot', u32],
    ['flags', u32],
    ['guest_phys_addr', u64],
    ['memory_size', u64],
    ['userspace_addr', ptr({ len: 'memory_size', retained: true })],
    ['guest_memfd_offset', u64],
    ['guest_memfd', u32],
    ['pad1', pad(4)],
    ['pad2', pad(14 * 8)],
  ],
  { size: 160 },
);

/** `struct kvm_memory_attributes` (6.8+, KVM_SET_MEMORY_ATTRIBUTES). */
export const kvm_memory_attributes = defineStruct(
  'kvm_memory_attributes',
  [
    ['address', u64],
    ['size', u64],
    ['attributes', u64],
    ['flags', u64],
  ],
  { size: 32 },
);

/** `struct kvm_create_guest_memfd` (6.8+, KVM_CREATE_GUEST_MEMFD). */
export const kvm_create_guest_memfd = defineStruct(
  'kvm_create_guest_memfd',
  [
    ['size', u64],
    ['flags', u64],
    ['reserved', pad(6 * 8)],
  ],
  { size: 64 },
);

/** `struct kvm_enable_cap` (KVM_ENABLE_CAP; for COPY/MOVE_ENC_CONTEXT_FROM args[0] is the source VM fd). */
export const kvm_enable_cap = defineStruct(
  'kvm_enable_cap',
  [
    ['cap', u32],
    ['flags', u32],
    ['args', array(u64, 4)],
    ['pad', pad(64)],
  ],
  { size: 104 },
);

/** `struct kvm_regs` (x86 general-purpose registers). */
export const kvm_regs = defineStruct(
  'kvm_regs',
  [
    ['rax', u64],
    ['rbx', u64],
    ['rcx', u64],
    ['rdx', u64],
    ['rsi', u64],
    ['rdi', u64],
    ['rsp', u64],
    ['rbp', u64],
    ['r8', u64],
    ['r9', u64],
    ['r10', u64],
    ['r11', u64],
    ['r12', u64],
    ['r13', u64],
    ['r14', u64],
    ['r15', u64],
    ['rip', u64],
    ['rflags', u64],
  ],
  { size: 144 },
);

/** `struct kvm_segment`. */
export const kvm_segment = defineStruct(
  'kvm_segment',
  [
    ['base', u64],
    ['limit', u32],
    ['selector', u16],
    ['type', u8],
    ['present', u8],
    ['dpl', u8],
    ['db', u8],
    ['s', u8],
    ['l', u8],
    ['g', u8],
    ['avl', u8],
    ['unusable', u8],
    ['padding', pad(1)],
  ],
  { size: 24 },
);

/** `struct kvm_dtable` (GDT/IDT). */
export const kvm_dtable = defineStruct(
  'kvm_dtable',
  [
    ['base', u64],
    ['limit', u16],
    ['padding', pad(6)],
  ],
  { size: 16 },
);

/** `struct kvm_sregs` (segments, control registers, pending-interrupt bitmap). */
export const kvm_sregs = defineStruct(
  'kvm_sregs',
  [
    ['cs', struct(kvm_segment)],
    ['ds', struct(kvm_segment)],
    ['es', struct(kvm_segment)],
    ['fs', struct(kvm_segment)],
    ['gs', struct(kvm_segment)],
    ['ss', struct(kvm_segment)],
    ['tr', struct(kvm_segment)],
    ['ldt', struct(kvm_segment)],
    ['gdt', struct(kvm_dtable)],
    ['idt', struct(kvm_dtable)],
    ['cr0', u64],
    ['cr2', u64],
    ['cr3', u64],
    ['cr4', u64],
    ['cr8', u64],
    ['efer', u64],
    ['apic_base', u64],
    ['interrupt_bitmap', array(u64, 4)],
  ],
  { size: 312 },
);

/** `struct kvm_fpu` (legacy FXSAVE-format FPU state). */
export const kvm_fpu = defineStruct(
  'kvm_fpu',
  [
    ['fpr', array(bytes(16), 8)],
    ['fcw', u16],
    ['fsw', u16],
    ['ftwx', u8],
    ['pad1', pad(1)],
    ['last_opcode', u16],
    ['last_ip', u64],
    ['last_dp', u64],
    ['xmm', array(bytes(16), 16)],
    ['mxcsr', u32],
    ['pad2', pad(4)],
  ],
  { size: 416 },
);

/** `struct kvm_xsave`: the 4096-byte XSAVE area (`__u32 region[1024]`, exposed as bytes). */
export const kvm_xsave = defineStruct('kvm_xsave', [['region', bytes(4096)]], { size: 4096 });

/** `struct kvm_xcr`. */
export const kvm_xcr = defineStruct(
  'kvm_xcr',
  [
    ['xcr', u32],
    ['reserved', pad(4)],
    ['value', u64],
  ],
  { size: 16 },
);

/** `struct kvm_xcrs`. */
export const kvm_xcrs = defineStruct(
  'kvm_xcrs',
  [
    ['nr_xcrs', u32],
    ['flags', u32],
    ['xcrs', array(struct(kvm_xcr), KVM_MAX_XCRS)],
    ['padding', pad(16 * 8)],
  ],
  { size: 392 },
);

/** `struct kvm_msr_entry`. */
export const kvm_msr_entry = defineStruct(
  'kvm_msr_entry',
  [
    ['index', u32],
    ['reserved', pad(4)],
    ['data', u64],
  ],
  { size: 16 },
);

/** `struct kvm_msrs` header (`entries[]` follows): see {@link msrsArg} / {@link decodeMsrs}. */
export const kvm_msrs = defineStruct(
  'kvm_msrs',
  [
    ['nmsrs', u32],
    ['pad', pad(4)],
  ],
  { size: 8 },
);

/** `struct kvm_msr_list` header (`__u32 indices[]` follows): see {@link msrListArg} / {@link decodeMsrList}. */
export const kvm_msr_list = defineStruct('kvm_msr_list', [['nmsrs', u32]], { size: 4 });

/** `struct kvm_cpuid_entry2`. */
export const kvm_cpuid_entry2 = defineStruct(
  'kvm_cpuid_entry2',
  [
    ['function', u32],
    ['index', u32],
    ['flags', u32],
    ['eax', u32],
    ['ebx', u32],
    ['ecx', u32],
    ['edx', u32],
    ['padding', pad(12)],
  ],
  { size: 40 },
);

/** `struct kvm_cpuid2` header (`entries[]` follows): see {@link cpuid2Arg} / {@link decodeCpuid2}. */
export const kvm_cpuid2 = defineStruct(
  'kvm_cpuid2',
  [
    ['nent', u32],
    ['padding', pad(4)],
  ],
  { size: 8 },
);

/** `struct kvm_lapic_state`: the local APIC register page. */
export const kvm_lapic_state = defineStruct('kvm_lapic_state', [['regs', bytes(KVM_APIC_REG_SIZE)]], { size: 1024 });

/** The anonymous `exception` member of kvm_vcpu_events. */
export const kvm_vcpu_events_exception = defineStruct(
  'kvm_vcpu_events.exception',
  [
    ['injected', u8],
    ['nr', u8],
    ['has_error_code', u8],
    ['pending', u8],
    ['error_code', u32],
  ],
  { size: 8 },
);
/** The anonymous `interrupt` member of kvm_vcpu_events. */
export const kvm_vcpu_events_interrupt = defineStruct(
  'kvm_vcpu_events.interrupt',
  [
    ['injected', u8],
    ['nr', u8],
    ['soft', u8],
    ['shadow', u8],
  ],
  { size: 4 },
);
/** The anonymous `nmi` member of kvm_vcpu_events. */
export const kvm_vcpu_events_nmi = defineStruct(
  'kvm_vcpu_events.nmi',
  [
    ['injected', u8],
    ['pending', u8],
    ['masked', u8],
    ['pad', pad(1)],
  ],
  { size: 4 },
);
/** The anonymous `smi` member of kvm_vcpu_events. */
export const kvm_vcpu_events_smi = defineStruct(
  'kvm_vcpu_events.smi',
  [
    ['smm', u8],
    ['pending', u8],
    ['smm_inside_nmi', u8],
    ['latched_init', u8],
  ],
  { size: 4 },
);
/** The anonymous `triple_fault` member of kvm_vcpu_events. */
export const kvm_vcpu_events_triple_fault = defineStruct('kvm_vcpu_events.triple_fault', [['pending', u8]], { size: 1 });

/** `struct kvm_vcpu_events`. */
export const kvm_vcpu_events = defineStruct(
  'kvm_vcpu_events',
  [
    ['exception', struct(kvm_vcpu_events_exception)],
    ['interrupt', struct(kvm_vcpu_events_interrupt)],
    ['nmi', struct(kvm_vcpu_events_nmi)],
    ['sipi_vector', u32],
    ['flags', u32],
    ['smi', struct(kvm_vcpu_events_smi)],
    ['triple_fault', struct(kvm_vcpu_events_triple_fault)],
    ['reserved', pad(26)],
    ['exception_has_payload', u8],
    ['exception_payload', u64],
  ],
  { size: 64 },
);

/** `struct kvm_mp_state`. */
export const kvm_mp_state = defineStruct('kvm_mp_state', [['mp_state', u32]], { size: 4 });

/** `struct kvm_debugregs`. */
export const kvm_debugregs = defineStruct(
  'kvm_debugregs',
  [
    ['db', array(u64, 4)],
    ['dr6', u64],
    ['dr7', u64],
    ['flags', u64],
    ['reserved', pad(9 * 8)],
  ],
  { size: 128 },
);

/**
 * `struct kvm_device_attr` (KVM_GET/HAS/SET_DEVICE_ATTR). `addr` points at the attribute's data; every
 * attribute this package uses (KVM_X86_GRP_SEV) is a u64, so the target must hold 8 bytes.
 */
export const kvm_device_attr = defineStruct(
  'kvm_device_attr',
  [
    ['flags', u32],
    ['group', u32],
    ['attr', u64],
    ['addr', ptr({ fixedLen: 8 })],
  ],
  { size: 24 },
);

/** `struct kvm_guest_debug_arch` (x86). */
export const kvm_guest_debug_arch = defineStruct('kvm_guest_debug_arch', [['debugreg', array(u64, 8)]], { size: 64 });

/** `struct kvm_guest_debug` (KVM_SET_GUEST_DEBUG). */
export const kvm_guest_debug = defineStruct(
  'kvm_guest_debug',
  [
    ['control', u32],
    ['pad', pad(4)],
    ['arch', struct(kvm_guest_debug_arch)],
  ],
  { size: 72 },
);

/**
 * `struct kvm_enc_region` (KVM_MEMORY_ENCRYPT_REG/UNREG_REGION). KVM pins `[addr, addr+size)` until
 * UNREG_REGION or VM destruction, so the target must be guest memory.
 */
export const kvm_enc_region = defineStruct(
  'kvm_enc_region',
  [
    ['addr', ptr({ len: 'size', retained: true })],
    ['size', u64],
  ],
  { size: 16 },
);

/** `struct kvm_clock_data` (KVM_GET/SET_CLOCK). */
export const kvm_clock_data = defineStruct(
  'kvm_clock_data',
  [
    ['clock', u64],
    ['flags', u32],
    ['pad0', pad(4)],
    ['realtime', u64],
    ['host_tsc', u64],
    ['pad', pad(16)],
  ],
  { size: 48 },
);

// ------------------------------------------------------------------------------------------------
// Variable-length structs

/** Layout of `struct kvm_msrs` + `kvm_msr_entry entries[]`. */
export const KVM_MSRS_LAYOUT: VariableLayout = Object.freeze({ countOffset: 0, countSize: 4, headerSize: 8, elementSize: 16 });
/** Layout of `struct kvm_cpuid2` + `kvm_cpuid_entry2 entries[]`. */
export const KVM_CPUID2_LAYOUT: VariableLayout = Object.freeze({ countOffset: 0, countSize: 4, headerSize: 8, elementSize: 40 });
/** Layout of `struct kvm_msr_list` + `__u32 indices[]`. */
export const KVM_MSR_LIST_LAYOUT: VariableLayout = Object.freeze({ countOffset: 0, countSize: 4, headerSize: 4, elementSize: 4 });

export type KvmMsrEntry = ValueOf<typeof kvm_msr_entry>;
export type KvmCpuidEntry2 = ValueOf<typeof kvm_cpuid_entry2>;

function capacityOf(name: string, n: unknown): number {
  if (typeof n !== 'number') throw invalidArgType(name, 'number', n);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffff) throw outOfRange(name, 'an integer >= 0 && <= 16777215', n);
  return n;
}

function headerPlus(header: Uint8Array, body: Uint8Array): IoctlStruct {
  const out = new Uint8Array(header.byteLength + body.byteLength);
  out.set(header, 0);
  out.set(body, header.byteLength);
  return ioctlStruct(out);
}

/**
 * Argument of KVM_GET_MSRS / KVM_SET_MSRS: `kvm_msrs` with `nmsrs = entries.length` and the entries.
 * For GET, give the indices (`{ index }`); KVM fills `data` and returns how many it read.
 */
export function msrsArg(entries: readonly EncodeInput<typeof kvm_msr_entry>[]): IoctlStruct {
  if (!Array.isArray(entries)) throw invalidArgType('entries', 'an instance of Array', entries);
  return headerPlus(kvm_msrs.encode({ nmsrs: entries.length }), encodeArray(kvm_msr_entry, entries));
}

/** Decode a `kvm_msrs` buffer: `nmsrs` and its entries (at most `count`, e.g. the ioctl's return value). */
export function decodeMsrs(b: Uint8Array, count?: number): { nmsrs: number; entries: KvmMsrEntry[] } {
  const { nmsrs } = kvm_msrs.decode(b);
  const fit = Math.floor((b.byteLength - KVM_MSRS_LAYOUT.headerSize) / KVM_MSRS_LAYOUT.elementSize);
  const n = Math.min(nmsrs, fit, count ?? Infinity);
  return { nmsrs, entries: decodeArray(kvm_msr_entry, b, KVM_MSRS_LAYOUT.headerSize, n) };
}

/**
 * Argument of KVM_GET_SUPPORTED_CPUID (a capacity: `nent` zeroed entries for KVM to fill; it writes back
 * the real `nent`, or fails with E2BIG) or KVM_SET_CPUID2 (the entries).
 */
export function cpuid2Arg(capacityOrEntries: number | readonly EncodeInput<typeof kvm_cpuid_entry2>[]): IoctlStruct {
  if (typeof capacityOrEntries === 'number') {
    const n = capacityOf('capacityOrEntries', capacityOrEntries);
    return headerPlus(kvm_cpuid2.encode({ nent: n }), new Uint8Array(n * KVM_CPUID2_LAYOUT.elementSize));
  }
  if (!Array.isArray(capacityOrEntries)) throw invalidArgType('capacityOrEntries', 'number or an instance of Array', capacityOrEntries);
  return headerPlus(kvm_cpuid2.encode({ nent: capacityOrEntries.length }), encodeArray(kvm_cpuid_entry2, capacityOrEntries));
}

/** Decode a `kvm_cpuid2` buffer: `nent` and the first `nent` entries (as many as the buffer holds). */
export function decodeCpuid2(b: Uint8Array): { nent: number; entries: KvmCpuidEntry2[] } {
  const { nent } = kvm_cpuid2.decode(b);
  const fit = Math.floor((b.byteLength - KVM_CPUID2_LAYOUT.headerSize) / KVM_CPUID2_LAYOUT.elementSize);
  return { nent, entries: decodeArray(kvm_cpuid_entry2, b, KVM_CPUID2_LAYOUT.headerSize, Math.min(nent, fit)) };
}

/**
 * Argument of KVM_GET_MSR_INDEX_LIST / KVM_GET_MSR_FEATURE_INDEX_LIST: room for `capacity` indices.
 * KVM writes back `nmsrs` (and fails with E2BIG if the capacity was too small).
 */
export function msrListArg(capacity: number): IoctlStruct {
  const n = capacityOf('capacity', capacity);
  const out = new Uint8Array(KVM_MSR_LIST_LAYOUT.headerSize + n * 4);
  kvm_msr_list.encode({ nmsrs: n }, out, 0);
  return ioctlStruct(out);
}

/** Decode a `kvm_msr_list` buffer: `nmsrs` and the indices that fit. */
export function decodeMsrList(b: Uint8Array): { nmsrs: number; indices: number[] } {
  const { nmsrs } = kvm_msr_list.decode(b);
  const fit = Math.floor((b.byteLength - KVM_MSR_LIST_LAYOUT.headerSize) / 4);
  const n = Math.min(nmsrs, fit);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const indices = new Array<number>(n);
  for (let i = 0; i < n; i++) indices[i] = dv.getUint32(KVM_MSR_LIST_LAYOUT.headerSize + 4 * i, true);
  return { nmsrs, indices };
}
