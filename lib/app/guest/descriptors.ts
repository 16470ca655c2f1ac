/**
 * Segment descriptors, TSS descriptors and interrupt gates as the CPU reads them from the GDT and
 * the IDT (Intel SDM vol. 3, sections 3.4.5, 7.2.3 and 6.14.1; AMD APM vol. 2, section 4.8), built
 * from the same `kvm_segment` values KVM_SET_SREGS takes, so the descriptor cache KVM loads and the
 * table a guest reloads from agree.
 */
import { outOfRange } from '../../uapi/errors.js';

/** The fields of `struct kvm_segment` (lib/uapi/kvm-structs.ts). */
export interface Segment {
  base: bigint;
  /** The byte-granular limit (0xffffffff for a flat segment with G=1). */
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

/** Selectors of the flat GDT {@link flatGdt} lays out (longModeEntryProgram uses the same first three). */
export const SELECTORS = Object.freeze({ code64: 0x08, data: 0x10, code32: 0x18, tss: 0x20 } as const);

const flat = (selector: number, type: number, db: number, l: number): Segment => ({
  base: 0n,
  limit: 0xffffffff,
  selector,
  type,
  present: 1,
  dpl: 0,
  db,
  s: 1,
  l,
  g: 1,
  avl: 0,
  unusable: 0,
});

/** Ring-0 flat segments: type 11 is execute/read, accessed; type 3 is read/write, accessed. */
export const FLAT_SEGMENTS = Object.freeze({
  code64: flat(SELECTORS.code64, 11, 0, 1),
  data: flat(SELECTORS.data, 3, 1, 0),
  code32: flat(SELECTORS.code32, 11, 1, 0),
});

/** A busy TSS (type 11: a 32-bit TSS in protected mode, a 64-bit one in long mode), as TR holds it. */
export function tssSegment(base: bigint): Segment {
  return { base, limit: 0x67, selector: SELECTORS.tss, type: 11, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 };
}

/** The LDT register with no LDT: selector 0, marked unusable (as KVM's selftests set it). */
export const NO_LDT: Segment = Object.freeze({
  base: 0n,
  limit: 0,
  selector: 0,
  type: 0,
  present: 0,
  dpl: 0,
  db: 0,
  s: 0,
  l: 0,
  g: 0,
  avl: 0,
  unusable: 1,
});

/** The 8-byte descriptor for `seg` (a code, data or, low half, system segment). */
export function segmentDescriptor(seg: Segment): bigint {
  const limit = seg.g ? Math.floor(seg.limit / 4096) : seg.limit;
  if (limit > 0xfffff || limit < 0) throw outOfRange('seg.limit', seg.g ? '<= 0xffffffff' : '<= 0xfffff (or set g)', seg.limit);
  if (seg.base < 0n || seg.base > 0xffffffffffffffffn) throw outOfRange('seg.base', '>= 0 && < 2^64', seg.base);
  const base = seg.base & 0xffffffffn;
  const access = (seg.type & 0xf) | ((seg.s & 1) << 4) | ((seg.dpl & 3) << 5) | ((seg.present & 1) << 7);
  const flags = (seg.avl & 1) | ((seg.l & 1) << 1) | ((seg.db & 1) << 2) | ((seg.g & 1) << 3);
  return (
    BigInt(limit & 0xffff) |
    ((base & 0xffffffn) << 16n) |
    (BigInt(access) << 40n) |
    (BigInt((limit >> 16) & 0xf) << 48n) |
    (BigInt(flags) << 52n) |
    ((base >> 24n) << 56n)
  );
}

/** A 16-byte long-mode system descriptor (TSS, LDT): the 8-byte form, then base bits 63:32. */
export function systemDescriptor64(seg: Segment): [bigint, bigint] {
  return [segmentDescriptor(seg), seg.base >> 32n];
}

/** A 64-bit interrupt gate (type 0xE, present, DPL 0, no IST): 16 bytes, as two quadwords. */
export function interruptGate64(handler: bigint, selector: number): [bigint, bigint] {
  const lo = (handler & 0xffffn) | (BigInt(selector) << 16n) | (0x8en << 40n) | (((handler >> 16n) & 0xffffn) << 48n);
  return [lo, handler >> 32n];
}

/** A 32-bit interrupt gate (type 0xE, present, DPL 0): 8 bytes. */
export function interruptGate32(handler: bigint, selector: number): bigint {
  if (handler > 0xffffffffn) throw outOfRange('handler', '< 2^32 in protected mode', handler);
  return (handler & 0xffffn) | (BigInt(selector) << 16n) | (0x8en << 40n) | (((handler >> 16n) & 0xffffn) << 48n);
}
