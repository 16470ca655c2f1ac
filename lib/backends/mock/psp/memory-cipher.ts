/**
 * The mock memory controller's cipher (docs/sev-reference.md §8).
 *
 * AMD does not document the memory encryption tweak (published reverse engineering describes an
 * XEX-like mode with an address-derived tweak). This is the mock's own choice, picked for speed and
 * for the properties §8 asks of a mock:
 *
 *   ciphertext byte at physical address a = plaintext byte ⊕ AES-128(VEK, BE128(a >> 4))[a & 15]
 *
 * i.e. AES-128-CTR whose 128-bit big-endian counter block for each 16-byte block is `paddr >> 4`.
 * A contiguous range is therefore one `createCipheriv('aes-128-ctr')` call with IV = BE128(paddr >> 4)
 * (OpenSSL increments the counter per block, which is exactly the next block's address), so the
 * throughput is that of raw AES. Equal plaintext at different addresses encrypts differently; moving
 * ciphertext to another address (or reading it with another key) yields garbage; guests sharing a
 * VEK read each other's memory. Unlike the real XEX mode it is malleable and two writes to the same
 * address under one key share a keystream: it is a functional model, not a security one.
 */
import { createCipheriv, type Cipher } from 'node:crypto';
import { invalidArgType, invalidArgValue } from '../../../uapi/errors.js';

const SKIP = Buffer.alloc(16);

/** The counter block of the 16-byte block containing `paddr`. */
export function memoryCounterBlock(paddr: bigint): Buffer {
  if (typeof paddr !== 'bigint') throw invalidArgType('paddr', 'bigint', paddr);
  if (paddr < 0n || paddr >= 1n << 64n) throw invalidArgValue('paddr', paddr, 'must be a 64-bit physical address');
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(paddr >> 4n, 8);
  return iv;
}

/**
 * Encrypts or decrypts (the cipher is an involution) `data` as it sits at physical address `paddr`
 * under `key`. `paddr` may start mid-block: the keystream of the first `paddr & 15` bytes of that
 * block is skipped. Returns a new buffer of `data.length` bytes.
 */
export function memoryCipher(key: Uint8Array, paddr: bigint, data: Uint8Array): Buffer {
  if (!(data instanceof Uint8Array)) throw invalidArgType('data', 'an instance of Uint8Array', data);
  const out = Buffer.allocUnsafe(data.length);
  memoryCipherInto(key, paddr, data, out);
  return out;
}

/**
 * Node's cipher.update() holds input-sized output twice while it works, so a whole guest at once
 * would cost two copies of its memory: the keystream runs over chunks of one cipher context instead.
 */
const CHUNK = 4 << 20;

/** {@link memoryCipher} written into `out` (same length as `data`; may be `data` itself: in place). */
export function memoryCipherInto(key: Uint8Array, paddr: bigint, data: Uint8Array, out: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== 16) throw invalidArgValue('key', key, 'must be a 16-byte AES-128 key');
  if (!(data instanceof Uint8Array)) throw invalidArgType('data', 'an instance of Uint8Array', data);
  if (!(out instanceof Uint8Array) || out.length !== data.length)
    throw invalidArgValue('out', out?.length, `must be a Uint8Array of ${data.length} bytes`);
  const c = createCipheriv('aes-128-ctr', key, memoryCounterBlock(paddr));
  const skip = Number(paddr & 15n);
  if (skip !== 0) c.update(SKIP.subarray(0, skip));
  for (let at = 0; at < data.length; at += CHUNK) {
    const end = Math.min(at + CHUNK, data.length);
    out.set(c.update(data.subarray(at, end)), at);
  }
}

/**
 * Bytes of counter blocks per AES-128-ECB pass of {@link memoryCipherRangesInPlace}: small enough that
 * the pass's output comes from the allocator's free lists (a larger one is fresh pages to fault in) and
 * stays in cache for the XOR. A range longer than this is one CTR stream of its own (its keystream is
 * contiguous, so CTR already runs at the cipher's speed).
 */
const ECB_PASS = 64 << 10;
/** Counter blocks of one pass, reused: bytes 0..7 of every block stay zero (a counter is below 2^61). */
const counterScratch = new Uint32Array(ECB_PASS / 4);
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** A 32-bit word as its big-endian bytes in a Uint32Array slot. */
const be32 = LITTLE_ENDIAN
  ? (x: number): number => (x >>> 24) | ((x >>> 8) & 0xff00) | ((x & 0xff00) << 8) | (x << 24)
  : (x: number): number => x;
const U64_END = 1n << 64n;

/**
 * Writes the `n` counter blocks from counter `hi` * 2^32 + `lo` at word `at` of `w` (only the low 8
 * bytes of each block).
 */
function writeCounters(w: Uint32Array, at: number, hi: number, lo: number, n: number): void {
  while (n > 0) {
    // Within a run of 256 counters only the last byte changes.
    const low8 = lo & 0xff;
    const run = Math.min(n, 256 - low8);
    const h = be32(hi);
    const l = be32(lo - low8);
    for (let j = 0; j < run; j++, at += 4) {
      w[at + 2] = h;
      w[at + 3] = LITTLE_ENDIAN ? l | ((low8 + j) << 24) : l | (low8 + j);
    }
    n -= run;
    lo += run;
    if (lo >= 2 ** 32) {
      lo -= 2 ** 32;
      hi++;
    }
  }
}

/**
 * An AES-128-ECB context per key object, reused across calls (without padding and fed whole blocks, it
 * holds no state between updates); the copy of the key catches a key changed in place.
 */
const ecbByKey = new WeakMap<Uint8Array, { key: Buffer; ecb: Cipher }>();

function ecbFor(key: Uint8Array): Cipher {
  const hit = ecbByKey.get(key);
  if (hit?.key.equals(key)) return hit.ecb;
  const ecb = createCipheriv('aes-128-ecb', key, null).setAutoPadding(false);
  ecbByKey.set(key, { key: Buffer.from(key), ecb });
  return ecb;
}

/** buffer[start, start + n) ^= ks[at, at + n) (8 bytes at a time where both are 8-aligned). */
function xorInto(buffer: ArrayBufferLike, start: number, n: number, ks: Uint8Array, at: number): void {
  if (((start | (ks.byteOffset + at) | n) & 7) === 0) {
    const d = new BigInt64Array(buffer, start, n >> 3);
    const k = new BigInt64Array(ks.buffer, ks.byteOffset + at, n >> 3);
    for (let i = 0; i < d.length; i++) d[i] = d[i]! ^ k[i]!;
    return;
  }
  const d = new Uint8Array(buffer, start, n);
  for (let i = 0; i < n; i++) d[i] = d[i]! ^ ks[at + i]!;
}

/** A range of {@link memoryCipherRangesInPlace}: bytes as they sit at physical address `paddr`. */
export interface CipherRange {
  readonly paddr: bigint;
  readonly bytes: Uint8Array;
}

/**
 * {@link memoryCipherInto} in place over many ranges under one key: the same bytes as one call per
 * range. A call per small range (the 4 KiB frames of a launch) would key a CTR context and allocate
 * its output for every page; here the counter blocks of small ranges go through AES-128-ECB passes of
 * up to {@link ECB_PASS} bytes (the CTR keystream, computed explicitly), XORed into the ranges in place.
 */
export function memoryCipherRangesInPlace(key: Uint8Array, ranges: readonly CipherRange[]): void {
  if (!(key instanceof Uint8Array) || key.length !== 16) throw invalidArgValue('key', key, 'must be a 16-byte AES-128 key');
  if (!Array.isArray(ranges)) throw invalidArgType('ranges', 'an Array of PhysRanges', ranges);
  const w = counterScratch;
  // The pass's pieces of memory (buffer-adjacent ranges merged), in counter order.
  const bufs: ArrayBufferLike[] = [];
  const starts: number[] = [];
  const ends: number[] = [];
  let fill = 0;
  const pass = (): void => {
    if (fill === 0) return;
    const ks = ecbFor(key).update(new Uint8Array(w.buffer, 0, fill));
    let at = 0;
    for (let i = 0; i < bufs.length; i++) {
      xorInto(bufs[i]!, starts[i]!, ends[i]! - starts[i]!, ks, at);
      at += ends[i]! - starts[i]!;
    }
    bufs.length = starts.length = ends.length = 0;
    fill = 0;
  };
  // All checked before any is touched: a bad range leaves memory as it was.
  for (const [i, r] of (ranges as readonly ({ paddr?: unknown; bytes?: unknown } | null)[]).entries()) {
    const paddr = r?.paddr;
    if (typeof paddr !== 'bigint' || paddr < 0n || paddr >= U64_END)
      throw invalidArgValue(`ranges[${i}].paddr`, paddr, 'must be a 64-bit physical address');
    if (!(r?.bytes instanceof Uint8Array)) throw invalidArgType(`ranges[${i}].bytes`, 'an instance of Uint8Array', r?.bytes);
  }
  for (const r of ranges as readonly CipherRange[]) {
    const paddr: bigint = r.paddr;
    const data: Uint8Array = r.bytes;
    const len = data.length;
    if (len === 0) continue;
    // paddr = hi36 * 2^36 + low36; its counter (paddr >> 4) = hi36 * 2^32 + low36 / 16.
    const low36 = Number(paddr & 0xf_ffff_ffffn);
    if (len > ECB_PASS || low36 % 16 !== 0 || len % 16 !== 0) {
      memoryCipherInto(key, paddr, data, data);
      continue;
    }
    if (fill + len > ECB_PASS) pass();
    writeCounters(w, fill >> 2, Number(paddr >> 36n), low36 / 16, len >> 4);
    const last = bufs.length - 1;
    const start = data.byteOffset;
    if (last >= 0 && bufs[last] === data.buffer && ends[last] === start) ends[last] = start + len;
    else {
      bufs.push(data.buffer);
      starts.push(start);
      ends.push(start + len);
    }
    fill += len;
  }
  pass();
}
