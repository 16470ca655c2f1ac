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
import { createCipheriv } from 'node:crypto';
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
