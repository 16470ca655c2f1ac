/**
 * NIST SP 800-108 KDF in counter mode with HMAC-SHA256, as the SEV firmware does it
 * (§3.3 step 3): counter i and L are u32 LITTLE-endian (§11.2).
 *   K(i) = HMAC-SHA256(keyIn, LE32(i) ‖ label ‖ 0x00 ‖ context ‖ LE32(L bits))
 */
import { createHmac } from 'node:crypto';
import { u32le } from './bytes.js';
import { checkBytes } from '../uapi/args.js';
import { invalidArgType, outOfRange } from './errors.js';

export const KDF_LABEL = {
  MASTER_SECRET: 'sev-master-secret',
  KEK: 'sev-kek',
  KIK: 'sev-kik',
  CEK: 'sev-chip-endorsement-key',
} as const;

export function kdfSp800108(keyIn: Uint8Array, label: string, context: Uint8Array, lengthBits: number): Buffer {
  const key = checkBytes('keyIn', keyIn);
  if (typeof label !== 'string') throw invalidArgType('label', 'string', label);
  const ctx = checkBytes('context', context);
  if (!Number.isInteger(lengthBits) || lengthBits <= 0 || lengthBits % 8 !== 0 || lengthBits > 0xffffffff) {
    throw outOfRange('lengthBits', 'a positive multiple of 8', lengthBits);
  }
  const fixed = Buffer.concat([Buffer.from(label, 'ascii'), Buffer.from([0]), ctx, u32le(lengthBits)]);
  const blocks: Buffer[] = [];
  for (let i = 1; i <= Math.ceil(lengthBits / 256); i++) {
    blocks.push(createHmac('sha256', key).update(u32le(i)).update(fixed).digest());
  }
  return Buffer.concat(blocks).subarray(0, lengthBits / 8);
}

export interface SessionKeys {
  masterSecret: Buffer;
  /** Key encryption key: AES-128-CTR key of WRAP_TK. */
  kek: Buffer;
  /** Key integrity key: HMAC key of WRAP_MAC. */
  kik: Buffer;
}

/** §3.3 steps 4–5: master secret from Z and NONCE, then KEK and KIK from it. */
export function deriveSessionKeys(sharedSecret: Uint8Array, nonce: Uint8Array): SessionKeys {
  const masterSecret = kdfSp800108(sharedSecret, KDF_LABEL.MASTER_SECRET, checkBytes('nonce', nonce, 16), 128);
  return {
    masterSecret,
    kek: kdfSp800108(masterSecret, KDF_LABEL.KEK, Buffer.alloc(0), 128),
    kik: kdfSp800108(masterSecret, KDF_LABEL.KIK, Buffer.alloc(0), 128),
  };
}
