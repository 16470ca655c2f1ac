/**
 * Where guest RAM goes in guest-physical space, as a PC lays it out: from 0 up to a hole below
 * 4 GiB, and the rest from 4 GiB up. The hole keeps RAM off the addresses x86 reserves for devices:
 * the IOAPIC at 0xfec00000, the local APIC at 0xfee00000 (APIC_DEFAULT_PHYS_BASE) and the firmware
 * below 4 GiB. RAM over the local APIC's page is not RAM to KVM: an access there that KVM emulates
 * is MMIO whatever the memory slots say (arch/x86/kvm/x86.c: vcpu_is_mmio_gpa()), and the in-kernel
 * APIC's access page collides with a slot there (arch/x86/kvm/lapic.c: kvm_alloc_apic_access_page()).
 * The hole starts at 3 GiB by default, as in cloud-hypervisor (arch/src/x86_64/layout.rs:
 * MEM_32BIT_RESERVED_START) and QEMU's i440fx PC for large guests (hw/i386/pc_piix.c: lowmem).
 */
import { checkObject } from '../uapi/args.js';
import { invalidArgType, invalidArgValue, outOfRange } from '../uapi/errors.js';

/** The first byte of the hole below 4 GiB (3 GiB). */
export const MMIO_HOLE_START = 0xc000_0000;
/** The first byte past the hole: RAM resumes at 4 GiB. */
export const MMIO_HOLE_END = 2 ** 32;
/** The IOAPIC's MMIO page (IO_APIC_DEFAULT_PHYS_BASE), inside the hole. */
export const IOAPIC_BASE = 0xfec0_0000;
/** The local APIC's MMIO page (APIC_DEFAULT_PHYS_BASE), inside the hole. */
export const LAPIC_BASE = 0xfee0_0000;

/** One piece of guest RAM: `size` bytes at `guestPhysAddr` (what {@link Vm.addMemory} takes). */
export interface RamRange {
  guestPhysAddr: bigint;
  size: number;
}

export interface RamLayoutOptions {
  /** Where the hole below 4 GiB starts: 4 KiB-aligned, at most {@link IOAPIC_BASE}. Default 3 GiB. */
  holeStart?: number;
}

/**
 * `size` bytes of guest RAM in one range below the hole, and what does not fit there in a second
 * from 4 GiB: `ramLayout(4 * 2 ** 30)` → `[{ guestPhysAddr: 0n, size: 3 GiB }, { guestPhysAddr: 4 GiB, size: 1 GiB }]`.
 */
export function ramLayout(size: number, options: RamLayoutOptions = {}): RamRange[] {
  if (typeof size !== 'number') throw invalidArgType('size', 'number', size);
  checkObject('options', options, true);
  if (options.holeStart !== undefined && typeof options.holeStart !== 'number')
    throw invalidArgType('options.holeStart', 'number', options.holeStart);
  if (!Number.isSafeInteger(size) || size <= 0 || size % 4096 !== 0)
    throw invalidArgValue('size', size, 'is not a non-zero multiple of 4096');
  const holeStart = options.holeStart ?? MMIO_HOLE_START;
  if (!Number.isSafeInteger(holeStart) || holeStart <= 0 || holeStart % 4096 !== 0 || holeStart > IOAPIC_BASE)
    throw outOfRange('options.holeStart', `a non-zero multiple of 4096, at most 0x${IOAPIC_BASE.toString(16)}`, holeStart);
  if (size <= holeStart) return [{ guestPhysAddr: 0n, size }];
  return [
    { guestPhysAddr: 0n, size: holeStart },
    { guestPhysAddr: BigInt(MMIO_HOLE_END), size: size - holeStart },
  ];
}

/** The first guest-physical address past the RAM of `ranges` (for how far page tables must map). */
export function ramEnd(ranges: readonly RamRange[]): bigint {
  return ranges.reduce((end, r) => (r.guestPhysAddr + BigInt(r.size) > end ? r.guestPhysAddr + BigInt(r.size) : end), 0n);
}
