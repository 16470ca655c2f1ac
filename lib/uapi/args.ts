/**
 * Argument checks, run before anything reaches a backend: each throws one of the Node-style errors of
 * errors.ts (ERR_INVALID_ARG_TYPE, ERR_INVALID_ARG_VALUE, ERR_OUT_OF_RANGE) and returns the value,
 * narrowed. One order everywhere, as in errors.ts: the argument's name first, then its value.
 */
import { SEV_FW_BLOB_MAX_SIZE } from './constants.js';
import { invalidArgType, invalidArgValue, outOfRange } from './errors.js';
import { isMappingRange, type MappingRange } from './ioctl-arg.js';

/** An integer in [min, max]. */
export function checkInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number') throw invalidArgType(name, 'number', v);
  if (!Number.isInteger(v) || v < min || v > max) throw outOfRange(name, `an integer >= ${min} && <= ${max}`, v);
  return v;
}

/** A u8. */
export function checkU8(name: string, v: unknown): number {
  return checkInt(name, v, 0, 0xff);
}

/** A u16. */
export function checkU16(name: string, v: unknown): number {
  return checkInt(name, v, 0, 0xffff);
}

/** A u32. */
export function checkU32(name: string, v: unknown): number {
  return checkInt(name, v, 0, 0xffffffff);
}

/** A u64 given as a bigint or a non-negative safe integer; returned as bigint. */
export function checkU64(name: string, v: unknown): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v > 0xffffffffffffffffn) throw outOfRange(name, 'an integer >= 0 && <= 2^64-1', v);
    return v;
  }
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw outOfRange(name, 'a safe integer >= 0 (use a bigint beyond 2^53)', v);
    return BigInt(v);
  }
  throw invalidArgType(name, 'bigint or number', v);
}

/**
 * A Uint8Array (a Buffer is one) of any length, or of exactly `length` bytes; returned as a Buffer
 * over the same memory (no copy), so what a callee writes there the caller sees.
 */
export function checkBytes(name: string, v: unknown, length?: number): Buffer {
  if (!(v instanceof Uint8Array)) throw invalidArgType(name, 'an instance of Buffer or Uint8Array', v);
  if (length !== undefined && v.byteLength !== length) {
    throw invalidArgValue(name, v, `must be exactly ${length} bytes long (it is ${v.byteLength})`);
  }
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * A blob the kernel hands to the SEV firmware: 1..`max` bytes. The kernel refuses an empty one and one
 * above SEV_FW_BLOB_MAX_SIZE (arch/x86/kvm/svm/sev.c: sev_launch_start(), sev_send_start() …).
 */
export function checkBlob(name: string, v: unknown, max = SEV_FW_BLOB_MAX_SIZE): Buffer {
  const b = checkBytes(name, v);
  if (b.byteLength === 0) throw invalidArgValue(name, v, 'must not be empty');
  if (b.byteLength > max) {
    throw outOfRange(`${name}.byteLength`, `<= ${max}${max === SEV_FW_BLOB_MAX_SIZE ? ' (SEV_FW_BLOB_MAX_SIZE)' : ''}`, b.byteLength);
  }
  return b;
}

/** A non-empty, open guest-memory range of at most `max` bytes (u32 lengths by default). */
export function checkRange(name: string, v: unknown, max = 0xffffffff): MappingRange {
  if (!isMappingRange(v)) throw invalidArgType(name, 'a MappingRange of guest memory (GuestMemory.range())', v);
  if (v.mapping.closed) throw invalidArgValue(name, v, 'refers to guest memory that was unmapped');
  if (
    !Number.isSafeInteger(v.offset) ||
    !Number.isSafeInteger(v.length) ||
    v.offset < 0 ||
    v.length < 0 ||
    v.offset + v.length > v.mapping.size
  ) {
    throw outOfRange(name, `a range inside its mapping (size ${v.mapping.size})`, `{ offset: ${v.offset}, length: ${v.length} }`);
  }
  if (v.length === 0) throw invalidArgValue(name, v, 'must not be empty');
  if (v.length > max) throw outOfRange(`${name}.length`, `<= ${max}`, v.length);
  return v;
}

/** An options object, not null nor an array (undefined allowed, as `{}`, when `optional`). */
export function checkObject<T extends object = Record<string, unknown>>(name: string, v: unknown, optional = false): T {
  if (v === undefined && optional) return {} as T;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidArgType(name, 'object', v);
  return v as T;
}
