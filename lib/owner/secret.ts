/** Guest owner: package a LAUNCH_SECRET (SEV API, LAUNCH_SECRET). */
import { checkBytes, checkObject } from '../uapi/args.js';
import { invalidArgType, outOfRange } from '../crypto/errors.js';
import { checkLaunchMeasurementShape, type LaunchMeasurement } from '../crypto/measurement.js';
import { MAX_PACKET_LENGTH, sealSecret } from '../crypto/secret.js';
import { buildSecretTable } from '../crypto/secret-table.js';
import type { SecretTableEntry } from '../crypto/secret-table.js';

export interface OwnerSecretOptions {
  /** TEK and TIK of {@link createSession}. */
  tek: Uint8Array;
  tik: Uint8Array;
  /**
   * What the host's `launchMeasure()` returned (`measured.measurement`), as is. Verify it first
   * (verifyMeasurement): the packet's MAC binds the secret to this launch's MEASURE, the only part
   * it uses (so `{ measure }` alone will do where the MNONCE is not at hand).
   */
  measurement: Pick<LaunchMeasurement, 'measure'>;
  /**
   * Either GUID-keyed entries (made into the OVMF/efi_secret table, padded to 16 bytes), or raw
   * bytes whose length must already be a 16-byte multiple, 16..0x5000.
   */
  secret: Uint8Array | readonly SecretTableEntry[];
  /** Default: 16 random bytes. */
  iv?: Uint8Array;
}

/**
 * A LAUNCH_SECRET packet in the shape the host's `launchSecret` takes:
 * `measured.launchSecret({ ...packet, guest: mem.range(gpa, packet.trans.length) })`.
 */
export interface OwnerSecret {
  /** 52 bytes: LAUNCH_SECRET hdr_uaddr (QMP sev-inject-launch-secret `packet-header`, base64). */
  header: Buffer;
  /** Ciphertext: trans_uaddr (QMP `secret`, base64); guest_len = trans_len = its length. */
  trans: Buffer;
  /** The plaintext that lands in guest memory. */
  plaintext: Buffer;
}

/**
 * AES-128-CTR(TEK, IV, plaintext) and MAC = HMAC-SHA256(TIK, 0x01 ‖ FLAGS(0) ‖ IV ‖ LEN ‖ LEN ‖
 * ciphertext ‖ MEASURE). Throws ERR_OUT_OF_RANGE for lengths the firmware would reject.
 */
export function buildSecret(opts: OwnerSecretOptions): OwnerSecret {
  checkObject('options', opts);
  if (opts.measurement instanceof Uint8Array) checkLaunchMeasurementShape(opts.measurement, 'options.measurement'); // says how to make one
  const measure = checkBytes('options.measurement.measure', checkObject('options.measurement', opts.measurement)['measure'], 32);
  let plaintext: Buffer;
  if (opts.secret instanceof Uint8Array) plaintext = Buffer.from(opts.secret);
  else if (Array.isArray(opts.secret)) plaintext = buildSecretTable(opts.secret as readonly SecretTableEntry[]);
  else throw invalidArgType('options.secret', 'a Uint8Array or an array of { guid, data }', opts.secret);
  if (plaintext.length === 0 || plaintext.length % 16 !== 0 || plaintext.length > MAX_PACKET_LENGTH) {
    throw outOfRange('options.secret length', `a multiple of 16 from 16 to ${MAX_PACKET_LENGTH}`, plaintext.length);
  }
  const sealed = sealSecret({ tek: opts.tek, tik: opts.tik, measurement: measure, plaintext, iv: opts.iv });
  return { header: sealed.headerBytes, trans: sealed.trans, plaintext };
}
