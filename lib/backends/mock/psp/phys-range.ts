/** Argument checks and slicing for {@link PhysRange}s (api.ts). */
import { checkBytes, checkObject, checkU64 } from '../../../uapi/args.js';
import { invalidArgType } from '../../../uapi/errors.js';
import type { PhysRange } from './api.js';

/** Throws a Node-style argument error unless `range` is a PhysRange (a u64 bigint paddr, a Uint8Array); returns it. */
export function checkPhysRange(name: string, range: unknown): PhysRange {
  const r = checkObject<{ paddr?: unknown; bytes?: unknown }>(name, range);
  // A bigint only: the firmware's addresses are u64, and a number would lose bits above 2^53.
  if (typeof r.paddr !== 'bigint') throw invalidArgType(`${name}.paddr`, 'bigint', r.paddr);
  checkU64(`${name}.paddr`, r.paddr);
  checkBytes(`${name}.bytes`, r.bytes);
  return range as PhysRange;
}

/** The part of `range` from byte `offset`, `length` bytes long (a live view). */
export function subRange(range: PhysRange, offset: number, length: number): PhysRange {
  return { paddr: range.paddr + BigInt(offset), bytes: range.bytes.subarray(offset, offset + length) };
}

/** True if the range's tweak address is 16-byte aligned (the firmware's INVALID_ADDRESS rule). */
export function isAligned16(range: PhysRange): boolean {
  return (range.paddr & 15n) === 0n;
}
