/** AES-128-CTR: 128-bit big-endian counter block incremented from the IV (§3.3 step 6). */
import { createCipheriv } from 'node:crypto';
import { checkBytes } from '../uapi/args.js';

/** Encrypts and decrypts (CTR is its own inverse). */
export function aes128Ctr(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Buffer {
  const c = createCipheriv('aes-128-ctr', checkBytes('key', key, 16), checkBytes('iv', iv, 16));
  return Buffer.concat([c.update(checkBytes('data', data)), c.final()]);
}
