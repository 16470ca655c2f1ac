/** Guest owner: package a LAUNCH_SECRET (docs/sev-reference.md §5). */
import { checkBytes, checkObject } from '../crypto/bytes.js';
import { invalidArgType, outOfRange } from '../crypto/errors.js';
import { MAX_PACKET_LENGTH, buildSecret as sealSecret } from '../crypto/secret.js';
import { buildSecretTable } from '../crypto/secret-table.js';
import type { SecretTableEntry } from '../crypto/secret-table.js';

export interface OwnerSecretOptions {
  /** TEK and TIK of {@link createSession}. */
  tek: Uint8Array;
  tik: Uint8Array;
  /**
   * LAUNCH_MEASURE's output: the 48-byte MEASURE ‖ MNONCE, or the 32-byte MEASURE alone.
   * Verify it first (verifyMeasurement): the MAC binds the secret to this launch.
   */
  measurement: Uint8Array;
  /**
   * Either GUID-keyed entries (made into the OVMF/efi_secret table, padded to 16 bytes), or raw
   * bytes whose length must already be a 16-byte multiple, 16..0x5000.
   */
  secret: Uint8Array | readonly SecretTableEntry[];
  /** Default: 16 random bytes. */
  iv?: Uint8Array;
}

export interface OwnerSecret {
  /** 52 bytes: LAUNCH_SECRET hdr_uaddr (QMP sev-inject-launch-secret `packet-header`, base64). */
  header: Buffer;
  /** Ciphertext: trans_uaddr (QMP `secret`, base64); guest_len = trans_len = its length. */
  secret: Buffer;
  /** The plaintext that lands in guest memory. */
  plaintext: Buffer;
}

/**
 * AES-128-CTR(TEK, IV, plaintext) and MAC = HMAC-SHA256(TIK, 0x01 ‖ FLAGS(0) ‖ IV ‖ LEN ‖ LEN ‖
 * ciphertext ‖ MEASURE). Throws ERR_OUT_OF_RANGE for lengths the firmware would reject.
 */
export function buildSecret(opts: OwnerSecretOptions): OwnerSecret {
  checkObject(opts, 'options');
  const m = checkBytes(opts.measurement, 'options.measurement');
  if (m.length !== 32 && m.length !== 48) throw outOfRange('options.measurement.length', '32 or 48', m.length);
  let plaintext: Buffer;
  if (opts.secret instanceof Uint8Array) plaintext = Buffer.from(opts.secret);
  else if (Array.isArray(opts.secret)) plaintext = buildSecretTable(opts.secret as readonly SecretTableEntry[]);
  else throw invalidArgType('options.secret', 'a Uint8Array or an array of { guid, data }', opts.secret);
  if (plaintext.length === 0 || plaintext.length % 16 !== 0 || plaintext.length > MAX_PACKET_LENGTH) {
    throw outOfRange('options.secret length', `a multiple of 16 from 16 to ${MAX_PACKET_LENGTH}`, plaintext.length);
  }
  const sealed = sealSecret({ tek: opts.tek, tik: opts.tik, measurement: m.subarray(0, 32), plaintext, iv: opts.iv });
  return { header: sealed.headerBytes, secret: sealed.trans, plaintext };
}
