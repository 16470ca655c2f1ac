/** Argument checks and slicing for {@link PhysRange}s (api.ts). */
import { checkObject, checkU64 } from '../../../uapi/args.js';
import { invalidArgType } from '../../../uapi/errors.js';
import type { PhysRange } from './api.js';

/** Throws a Node-style argument error unless `range` is a PhysRange (a u64 bigint paddr, a Uint8Array); returns it. */
export function checkPhysRange(name: string, range: unknown): PhysRange {
  const r = checkObject<{ paddr?: unknown; bytes?: unknown }>(name, range);
  // A bigint only: the firmware's addresses are u64, and a number would lose bits above 2^53.
  if (typeof r.paddr !== 'bigint') throw invalidArgType(`${name}.paddr`, 'bigint', r.paddr);
  checkU64(`${name}.paddr`, r.paddr);
  // (checkBytes would also make a Buffer view of it: this runs for every page of a launch)
  if (!(r.bytes instanceof Uint8Array)) throw invalidArgType(`${name}.bytes`, 'an instance of Buffer or Uint8Array', r.bytes);
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
