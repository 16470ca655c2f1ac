/**
 * Identity-mapping page tables a setup helper writes into guest memory (Intel SDM vol. 3, sections
 * 4.3 and 4.5; AMD APM vol. 2, section 5.3): 4-level tables with 2 MiB pages for long mode, and a
 * 32-bit page directory of 4 MiB pages (CR4.PSE) for protected mode.
 */
import { outOfRange } from '../../uapi/errors.js';

/** Present, writable. */
const PRESENT_RW = 0x3n;
/** Present, writable, a large page (PS, bit 7). */
const LARGE_PAGE = 0x83n;

export interface PageTableImage {
  /** What CR3 points at (the first page). */
  root: bigint;
  /** Each 4 KiB table, in order from `root`. */
  bytes: Uint8Array;
}

/**
 * A PML4, a PDPT and `gib` page directories at `at`, mapping guest-virtual = guest-physical for
 * the first `gib` GiB in 2 MiB pages: `(2 + gib) * 4 KiB`.
 */
export function identityMap4Level(at: bigint, gib: number): PageTableImage {
  if (at % 0x1000n !== 0n || at < 0n) throw outOfRange('at', 'a 4 KiB-aligned address', at);
  if (!Number.isInteger(gib) || gib < 1 || gib > 512) throw outOfRange('gib', '>= 1 && <= 512 (one PDPT)', gib);
  const bytes = new Uint8Array((2 + gib) * 0x1000);
  const dv = new DataView(bytes.buffer);
  dv.setBigUint64(0, (at + 0x1000n) | PRESENT_RW, true); // PML4[0] -> the PDPT
  for (let k = 0; k < gib; k++) {
    const pd = 0x2000 + k * 0x1000;
    dv.setBigUint64(0x1000 + 8 * k, (at + BigInt(pd)) | PRESENT_RW, true); // PDPT[k] -> page directory k
    for (let j = 0; j < 512; j++) dv.setBigUint64(pd + 8 * j, (BigInt(k * 512 + j) << 21n) | LARGE_PAGE, true);
  }
  return { root: at, bytes };
}

/** A 32-bit page directory at `at` of 1024 4 MiB pages: all 4 GiB, identity-mapped (needs CR4.PSE). */
export function identityMap32(at: bigint): PageTableImage {
  if (at % 0x1000n !== 0n || at < 0n || at > 0xfffff000n) throw outOfRange('at', 'a 4 KiB-aligned address below 4 GiB', at);
  const bytes = new Uint8Array(0x1000);
  const dv = new DataView(bytes.buffer);
  for (let i = 0; i < 1024; i++) dv.setUint32(4 * i, Number((BigInt(i) << 22n) | LARGE_PAGE), true);
  return { root: at, bytes };
}
