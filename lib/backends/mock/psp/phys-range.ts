/** Argument checks and slicing for {@link PhysRange}s (api.ts). */
import { invalidArgType, invalidArgValue } from '../../../uapi/errors.js';
import type { PhysRange } from './api.js';

/** Throws a Node-style argument error unless `range` is a PhysRange; returns it. */
export function checkRange(range: unknown, name: string): PhysRange {
  if (typeof range !== 'object' || range === null) throw invalidArgType(name, 'object', range);
  const r = range as { paddr?: unknown; bytes?: unknown };
  if (typeof r.paddr !== 'bigint') throw invalidArgType(`${name}.paddr`, 'bigint', r.paddr);
  if (r.paddr < 0n || r.paddr >= 1n << 64n) throw invalidArgValue(`${name}.paddr`, r.paddr, 'must be a 64-bit physical address');
  if (!(r.bytes instanceof Uint8Array)) throw invalidArgType(`${name}.bytes`, 'an instance of Uint8Array', r.bytes);
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
