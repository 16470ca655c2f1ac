/** HMAC-SHA256, the MAC of every SEV channel construct (§3.2, §4.3, §5, §6). */
import { createHmac } from 'node:crypto';
import { checkBytes } from '../uapi/args.js';

export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('sha256', checkBytes('key', key));
  for (const p of parts) h.update(p);
  return h.digest();
}
