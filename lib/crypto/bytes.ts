/** Byte helpers. All SEV integers are little-endian (§0). Argument checks are in lib/uapi/args.ts. */
import { timingSafeEqual } from 'node:crypto';
import { outOfRange } from './errors.js';

/** A Buffer view of `u8` (no copy). */
export function view(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** A fresh copy as Buffer. */
export function copy(u8: Uint8Array): Buffer {
  return Buffer.from(u8);
}

export function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

/** Reversed copy: big-endian ⇄ little-endian. */
export function reversed(u8: Uint8Array): Buffer {
  return Buffer.from(u8).reverse();
}

export function leToBigInt(u8: Uint8Array): bigint {
  let n = 0n;
  for (let i = u8.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(u8[i]!);
  return n;
}

export function beToBigInt(u8: Uint8Array): bigint {
  let n = 0n;
  for (const b of u8) n = (n << 8n) | BigInt(b);
  return n;
}

/** `n` as `len` little-endian bytes; throws if it does not fit. */
export function bigIntToLe(n: bigint, len: number): Buffer {
  const out = Buffer.alloc(len);
  let v = n;
  for (let i = 0; i < len; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  if (v !== 0n || n < 0n) throw outOfRange('n', `a non-negative integer of at most ${len} bytes`, n);
  return out;
}

export function bigIntToBe(n: bigint, len: number): Buffer {
  return bigIntToLe(n, len).reverse();
}

/** Constant-time equality (false on different lengths). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function isAllZero(u8: Uint8Array): boolean {
  for (const b of u8) if (b !== 0) return false;
  return true;
}
