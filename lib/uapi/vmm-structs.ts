/**
 * The structs of the KVM interfaces a VMM drives besides SEV (x86_64 layouts of `<linux/kvm.h>` and
 * `<asm/kvm.h>`): interrupt controllers and the PIT, IRQ lines, GSI routing and MSIs, irqfd and
 * ioeventfd, dirty logging, the MSR filter, devices and binary stats. Helpers build the
 * variable-length and union-holding ones.
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
  i64,
  pad,
  ptr,
  struct,
  u16,
  u32,
  u64,
  u8,
} from './codec.js';
import { invalidArgType, invalidArgValue, outOfRange } from './errors.js';
import { type IoctlStruct, ioctlStruct } from './ioctl-arg.js';
import { KVM_IOAPIC_NUM_PINS, KVM_IRQ_ROUTING, KVM_MSR_FILTER_MAX_BITMAP_SIZE, KVM_MSR_FILTER_MAX_RANGES } from './vmm-constants.js';

// ------------------------------------------------------------------------------------------------
// Interrupt controllers and the PIT

/** `struct kvm_irq_level` (KVM_IRQ_LINE, KVM_IRQ_LINE_STATUS): `irq` in; LINE_STATUS writes the `__s32 status` over it. */
export const kvm_irq_level = defineStruct(
  'kvm_irq_level',
  [
    ['irq', u32],
    ['level', u32],
  ],
  { size: 8 },
);

/** `struct kvm_pic_state`: one 8259A (master or slave) as KVM emulates it. */
export const kvm_pic_state = defineStruct(
  'kvm_pic_state',
  [
    ['last_irr', u8],
    ['irr', u8],
    ['imr', u8],
    ['isr', u8],
    ['priority_add', u8],
    ['irq_base', u8],
    ['read_reg_select', u8],
    ['poll', u8],
    ['special_mask', u8],
    ['init_state', u8],
    ['auto_eoi', u8],
    ['rotate_on_auto_eoi', u8],
    ['special_fully_nested_mode', u8],
    ['init4', u8],
    ['elcr', u8],
    ['elcr_mask', u8],
  ],
  { size: 16 },
);

/**
 * `struct kvm_ioapic_state`. Each `redirtbl` entry is the 64-bit register (`union { __u64 bits; … }`):
 * vector bits 0-7, delivery mode 8-10, dest mode 11, delivery status 12, polarity 13, remote IRR 14,
 * trigger mode 15, mask 16, destination 56-63 (see {@link ioapicRedirection}).
 */
export const kvm_ioapic_state = defineStruct(
  'kvm_ioapic_state',
  [
    ['base_address', u64],
    ['ioregsel', u32],
    ['id', u32],
    ['irr', u32],
    ['pad', pad(4)],
    ['redirtbl', array(u64, KVM_IOAPIC_NUM_PINS)],
  ],
  { size: 216 },
);

/** `struct kvm_irqchip` (KVM_GET/SET_IRQCHIP): `chip` is the 512-byte union; decode it with {@link decodeIrqchip}. */
export const kvm_irqchip = defineStruct(
  'kvm_irqchip',
  [
    ['chip_id', u32],
    ['pad', pad(4)],
    ['chip', bytes(512)],
  ],
  { size: 520 },
);

export type KvmPicState = ValueOf<typeof kvm_pic_state>;
export type KvmIoapicState = ValueOf<typeof kvm_ioapic_state>;

/** The chip inside a `kvm_irqchip`: a PIC for chip ids 0/1, the IOAPIC for 2. */
export function decodeIrqchip(b: Uint8Array): { chip_id: 0 | 1; pic: KvmPicState } | { chip_id: 2; ioapic: KvmIoapicState } {
  const { chip_id, chip } = kvm_irqchip.decode(b);
  if (chip_id === 0 || chip_id === 1) return { chip_id, pic: kvm_pic_state.decode(chip) };
  if (chip_id === 2) return { chip_id, ioapic: kvm_ioapic_state.decode(chip) };
  throw outOfRange('chip_id', 'KVM_IRQCHIP_PIC_MASTER (0), PIC_SLAVE (1) or IOAPIC (2)', chip_id);
}

/** A `kvm_irqchip` argument holding a PIC (chip 0 or 1) or the IOAPIC (chip 2) state. */
export function irqchipArg(
  v: { chip_id: 0 | 1; pic: EncodeInput<typeof kvm_pic_state> } | { chip_id: 2; ioapic: EncodeInput<typeof kvm_ioapic_state> },
): IoctlStruct {
  if (typeof v !== 'object' || v === null) throw invalidArgType('chip', 'object', v);
  const chip = new Uint8Array(512);
  if (v.chip_id === 2) kvm_ioapic_state.encode(v.ioapic, chip, 0);
  else if (v.chip_id === 0 || v.chip_id === 1) kvm_pic_state.encode(v.pic, chip, 0);
  else throw outOfRange('chip.chip_id', '0, 1 or 2', (v as { chip_id: unknown }).chip_id);
  return kvm_irqchip.arg({ chip_id: v.chip_id, chip });
}

/** The fields of one IOAPIC redirection-table entry (`kvm_ioapic_state.redirtbl[i].fields`). */
export function ioapicRedirection(bits: bigint): {
  vector: number;
  deliveryMode: number;
  destMode: number;
  deliveryStatus: number;
  polarity: number;
  remoteIrr: number;
  trigMode: number;
  mask: number;
  destId: number;
} {
  const lo = Number(bits & 0xffffffffn);
  return {
    vector: lo & 0xff,
    deliveryMode: (lo >>> 8) & 7,
    destMode: (lo >>> 11) & 1,
    deliveryStatus: (lo >>> 12) & 1,
    polarity: (lo >>> 13) & 1,
    remoteIrr: (lo >>> 14) & 1,
    trigMode: (lo >>> 15) & 1,
    mask: (lo >>> 16) & 1,
    destId: Number((bits >> 56n) & 0xffn),
  };
}

/** `struct kvm_pit_config` (KVM_CREATE_PIT2). */
export const kvm_pit_config = defineStruct(
  'kvm_pit_config',
  [
    ['flags', u32],
    ['pad', pad(60)],
  ],
  { size: 64 },
);

/** `struct kvm_pit_channel_state`: one i8254 counter. */
export const kvm_pit_channel_state = defineStruct(
  'kvm_pit_channel_state',
  [
    ['count', u32],
    ['latched_count', u16],
    ['count_latched', u8],
    ['status_latched', u8],
    ['status', u8],
    ['read_state', u8],
    ['write_state', u8],
    ['write_latch', u8],
    ['rw_mode', u8],
    ['mode', u8],
    ['bcd', u8],
    ['gate', u8],
    ['count_load_time', i64],
  ],
  { size: 24 },
);

/** `struct kvm_pit_state2` (KVM_GET/SET_PIT2). */
export const kvm_pit_state2 = defineStruct(
  'kvm_pit_state2',
  [
    ['channels', array(struct(kvm_pit_channel_state), 3)],
    ['flags', u32],
    ['reserved', pad(36)],
  ],
  { size: 112 },
);

/** `struct kvm_interrupt` (KVM_INTERRUPT: a vector for a vCPU without an in-kernel LAPIC). */
export const kvm_interrupt = defineStruct('kvm_interrupt', [['irq', u32]], { size: 4 });

// ------------------------------------------------------------------------------------------------
// MSIs and GSI routing

/** `struct kvm_msi` (KVM_SIGNAL_MSI). */
export const kvm_msi = defineStruct(
  'kvm_msi',
  [
    ['address_lo', u32],
    ['address_hi', u32],
    ['data', u32],
    ['flags', u32],
    ['devid', u32],
    ['pad', pad(12)],
  ],
  { size: 32 },
);

/**
 * `struct kvm_irq_routing_entry`. `u` is the 32-byte union as eight u32s: for KVM_IRQ_ROUTING_IRQCHIP
 * `[irqchip, pin]`, for KVM_IRQ_ROUTING_MSI `[address_lo, address_hi, data, devid]` (see {@link gsiRoutingArg}).
 */
export const kvm_irq_routing_entry = defineStruct(
  'kvm_irq_routing_entry',
  [
    ['gsi', u32],
    ['type', u32],
    ['flags', u32],
    ['pad', pad(4)],
    ['u', array(u32, 8)],
  ],
  { size: 48 },
);

/** `struct kvm_irq_routing` header (`entries[]` follows): see {@link gsiRoutingArg}. */
export const kvm_irq_routing = defineStruct(
  'kvm_irq_routing',
  [
    ['nr', u32],
    ['flags', u32],
  ],
  { size: 8 },
);

/** Layout of `struct kvm_irq_routing` + `kvm_irq_routing_entry entries[]`. */
export const KVM_IRQ_ROUTING_LAYOUT: VariableLayout = Object.freeze({ countOffset: 0, countSize: 4, headerSize: 8, elementSize: 48 });

/** One GSI route, as a VMM writes it. */
export type GsiRoute =
  | { gsi: number; type: 'irqchip'; irqchip: number; pin: number }
  | { gsi: number; type: 'msi'; addressLo: number; addressHi?: number; data: number; devid?: number; flags?: number };

/** The whole routing table for KVM_SET_GSI_ROUTING (it replaces the table: give every route). */
export function gsiRoutingArg(routes: readonly GsiRoute[]): IoctlStruct {
  if (!Array.isArray(routes)) throw invalidArgType('routes', 'an instance of Array', routes);
  const entries = (routes as readonly GsiRoute[]).map((r: GsiRoute, i) => {
    if (typeof r !== 'object' || r === null) throw invalidArgType(`routes[${i}]`, 'object', r);
    if (r.type === 'irqchip') return { gsi: r.gsi, type: KVM_IRQ_ROUTING.IRQCHIP, u: [r.irqchip, r.pin] };
    if (r.type === 'msi')
      return { gsi: r.gsi, type: KVM_IRQ_ROUTING.MSI, flags: r.flags ?? 0, u: [r.addressLo, r.addressHi ?? 0, r.data, r.devid ?? 0] };
    throw invalidArgValue(`routes[${i}].type`, (r as { type: unknown }).type, "must be 'irqchip' or 'msi'");
  });
  const head = kvm_irq_routing.encode({ nr: entries.length, flags: 0 });
  const body = encodeArray(kvm_irq_routing_entry, entries);
  const out = new Uint8Array(head.byteLength + body.byteLength);
  out.set(head, 0);
  out.set(body, head.byteLength);
  return ioctlStruct(out);
}

/** Decode a `kvm_irq_routing` buffer (for the mock kernel and traces). */
export function decodeGsiRouting(b: Uint8Array): { nr: number; flags: number; entries: ValueOf<typeof kvm_irq_routing_entry>[] } {
  const { nr, flags } = kvm_irq_routing.decode(b);
  const fit = Math.floor((b.byteLength - 8) / 48);
  return { nr, flags, entries: decodeArray(kvm_irq_routing_entry, b, 8, Math.min(nr, fit)) };
}

// ------------------------------------------------------------------------------------------------
// irqfd, ioeventfd

/** `struct kvm_irqfd` (KVM_IRQFD): `fd` (and `resamplefd`) are eventfd numbers of this process. */
export const kvm_irqfd = defineStruct(
  'kvm_irqfd',
  [
    ['fd', u32],
    ['gsi', u32],
    ['flags', u32],
    ['resamplefd', u32],
    ['pad', pad(16)],
  ],
  { size: 32 },
);

/** `struct kvm_ioeventfd` (KVM_IOEVENTFD): `fd` is an eventfd number of this process. */
export const kvm_ioeventfd = defineStruct(
  'kvm_ioeventfd',
  [
    ['datamatch', u64],
    ['addr', u64],
    ['len', u32],
    ['fd', u32],
    ['flags', u32],
    ['pad', pad(36)],
  ],
  { size: 64 },
);

// ------------------------------------------------------------------------------------------------
// Dirty logging

/**
 * `struct kvm_dirty_log` (KVM_GET_DIRTY_LOG): KVM writes one bit per page of memory slot `slot`,
 * rounded up to 64 bits, to `dirty_bitmap`; the backend checks the target against the slot's size.
 */
export const kvm_dirty_log = defineStruct(
  'kvm_dirty_log',
  [
    ['slot', u32],
    ['padding1', pad(4)],
    ['dirty_bitmap', ptr({ memslotBitmap: 'slot' })],
  ],
  { size: 16 },
);

/**
 * `struct kvm_clear_dirty_log` (KVM_CLEAR_DIRTY_LOG): re-protects the pages whose bits are set, from
 * `first_page` for `num_pages` pages (both multiples of 64, unless the range ends at the slot's end).
 */
export const kvm_clear_dirty_log = defineStruct(
  'kvm_clear_dirty_log',
  [
    ['slot', u32],
    ['num_pages', u32],
    ['first_page', u64],
    ['dirty_bitmap', ptr({ len: 'num_pages', lenUnit: 'bits' })],
  ],
  { size: 24 },
);

/** Bytes of a dirty bitmap for `pages` pages (`ALIGN(npages, BITS_PER_LONG) / 8`, kvm_dirty_bitmap_bytes()). */
export function dirtyBitmapBytes(pages: number): number {
  if (!Number.isSafeInteger(pages) || pages < 0) throw outOfRange('pages', 'an integer >= 0', pages);
  return Math.ceil(pages / 64) * 8;
}

/** The page indices whose bits are set in a dirty bitmap. */
export function dirtyPages(bitmap: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < bitmap.byteLength; i++) {
    const b = bitmap[i]!;
    if (b === 0) continue;
    for (let bit = 0; bit < 8; bit++) if (b & (1 << bit)) out.push(i * 8 + bit);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// MSR filter

/** `struct kvm_msr_filter_range`: `nmsrs` bits from MSR `base`; a set bit allows the `flags` accesses. */
export const kvm_msr_filter_range = defineStruct(
  'kvm_msr_filter_range',
  [
    ['flags', u32],
    ['nmsrs', u32],
    ['base', u32],
    ['bitmap', ptr({ len: 'nmsrs', lenUnit: 'bits' })],
  ],
  { size: 24 },
);

/** `struct kvm_msr_filter` (KVM_X86_SET_MSR_FILTER): up to 16 ranges, each with its own bitmap. */
export const kvm_msr_filter = defineStruct(
  'kvm_msr_filter',
  [
    ['flags', u32],
    ['ranges', array(struct(kvm_msr_filter_range), KVM_MSR_FILTER_MAX_RANGES)],
  ],
  { size: 392 },
);

/** One range of an MSR filter: `allow` lists the MSRs of [base, base+nmsrs) the `flags` accesses are allowed to (the rest are filtered). */
export interface MsrFilterRange {
  /** KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE */
  flags: number;
  base: number;
  nmsrs: number;
  /** MSR indices inside the range that stay allowed (a 1 bit); every other one is denied. */
  allow?: readonly number[];
}

/** A `kvm_msr_filter` argument: default flag plus ranges whose bitmaps are built from `allow`. */
export function msrFilterArg(flags: number, ranges: readonly MsrFilterRange[]): IoctlStruct {
  if (!Array.isArray(ranges)) throw invalidArgType('ranges', 'an instance of Array', ranges);
  if (ranges.length > KVM_MSR_FILTER_MAX_RANGES) throw outOfRange('ranges.length', `<= ${KVM_MSR_FILTER_MAX_RANGES}`, ranges.length);
  const out = (ranges as readonly MsrFilterRange[]).map((r: MsrFilterRange, i) => {
    if (!Number.isInteger(r.nmsrs) || r.nmsrs < 1 || r.nmsrs > KVM_MSR_FILTER_MAX_BITMAP_SIZE * 8)
      throw outOfRange(`ranges[${i}].nmsrs`, `an integer >= 1 && <= ${KVM_MSR_FILTER_MAX_BITMAP_SIZE * 8}`, r.nmsrs);
    const bitmap = new Uint8Array(Math.ceil(r.nmsrs / 64) * 8);
    for (const m of r.allow ?? []) {
      const bit = (m >>> 0) - (r.base >>> 0);
      if (bit < 0 || bit >= r.nmsrs) throw outOfRange(`ranges[${i}].allow`, `MSRs in [${r.base}, +${r.nmsrs})`, m);
      bitmap[bit >> 3]! |= 1 << (bit & 7);
    }
    return { flags: r.flags, nmsrs: r.nmsrs, base: r.base >>> 0, bitmap };
  });
  return kvm_msr_filter.arg({ flags, ranges: out });
}

// ------------------------------------------------------------------------------------------------
// Devices, stats

/** `struct kvm_create_device` (KVM_CREATE_DEVICE): `fd` is written by KVM (the backend returns it as an owned fd). */
export const kvm_create_device = defineStruct(
  'kvm_create_device',
  [
    ['type', u32],
    ['fd', u32],
    ['flags', u32],
  ],
  { size: 12 },
);

/** `struct kvm_stats_header`: the start of a binary stats fd (KVM_GET_STATS_FD). */
export const kvm_stats_header = defineStruct(
  'kvm_stats_header',
  [
    ['flags', u32],
    ['name_size', u32],
    ['num_desc', u32],
    ['id_offset', u32],
    ['desc_offset', u32],
    ['data_offset', u32],
  ],
  { size: 24 },
);

/** `struct kvm_stats_desc` (its `char name[]` follows, `name_size` bytes). `exponent` is an `__s16`. */
export const kvm_stats_desc = defineStruct(
  'kvm_stats_desc',
  [
    ['flags', u32],
    ['exponent', u16],
    ['size', u16],
    ['offset', u32],
    ['bucket_size', u32],
  ],
  { size: 16 },
);
