/**
 * The launch digest GCTX.LD and the LAUNCH_MEASURE value (§4.1, §4.3):
 *   LD      = SHA-256(update_1 ‖ … ‖ update_n)   (plaintext of each LAUNCH_UPDATE_DATA/VMSA, in order)
 *   MEASURE = HMAC-SHA256(TIK, 0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ LE32(POLICY) ‖ LD ‖ MNONCE)
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { bytesEqual, checkBytes, checkObject, checkUint, copy, u32le } from './bytes.js';
import { SevFormatError } from './errors.js';
import { hmacSha256 } from './hmac.js';
import { ChannelContext } from './channel.js';

/** LAUNCH_MEASURE output: MEASURE[32] ‖ MNONCE[16]. */
export const LAUNCH_MEASURE_SIZE = 48;

/** Streaming GCTX.LD: feed each update's plaintext; chunking does not matter. */
export class LaunchDigest {
  #hash: Hash = createHash('sha256');
  #final: Buffer | undefined;

  update(data: Uint8Array): this {
    if (this.#final) throw new Error('LaunchDigest already finalised');
    this.#hash.update(checkBytes(data, 'data'));
    return this;
  }

  /** The 32-byte digest; later calls return the same value. */
  digest(): Buffer {
    this.#final ??= this.#hash.digest();
    return copy(this.#final);
  }

  /** Digest of what was fed so far, without finalising. */
  peek(): Buffer {
    return this.#final ? copy(this.#final) : this.#hash.copy().digest();
  }
}

export function launchDigest(updates: Iterable<Uint8Array>): Buffer {
  const d = new LaunchDigest();
  for (const u of updates) d.update(u);
  return d.digest();
}

export interface MeasurementInput {
  /** The firmware's values (PLATFORM_STATUS), not the certificate's or the policy's (§11.4). */
  apiMajor: number;
  apiMinor: number;
  build: number;
  policy: number;
  /** GCTX.LD, 32 bytes. */
  digest: Uint8Array;
  /** 16 bytes. */
  mnonce: Uint8Array;
  /** 16 bytes (all zero when LAUNCH_START had no session). */
  tik: Uint8Array;
}

/** The 56-byte message the MEASURE HMAC covers. */
export function measurementMessage(m: Omit<MeasurementInput, 'tik'>): Buffer {
  checkObject(m, 'input');
  return Buffer.concat([
    Buffer.from([
      ChannelContext.MEASURE,
      checkUint(m.apiMajor, 'apiMajor', 8),
      checkUint(m.apiMinor, 'apiMinor', 8),
      checkUint(m.build, 'build', 8),
    ]),
    u32le(checkUint(m.policy, 'policy', 32)),
    checkBytes(m.digest, 'digest', 32),
    checkBytes(m.mnonce, 'mnonce', 16),
  ]);
}

export function computeLaunchMeasurement(m: MeasurementInput): Buffer {
  return hmacSha256(checkBytes(m.tik, 'tik', 16), measurementMessage(m));
}

export interface LaunchMeasureBlob {
  measure: Buffer;
  mnonce: Buffer;
}

export function parseLaunchMeasureBlob(bytes: Uint8Array): LaunchMeasureBlob {
  const b = checkBytes(bytes, 'bytes');
  if (b.length !== LAUNCH_MEASURE_SIZE) throw new SevFormatError(`LAUNCH_MEASURE output is ${LAUNCH_MEASURE_SIZE} bytes, got ${b.length}`);
  return { measure: copy(b.subarray(0, 32)), mnonce: copy(b.subarray(32)) };
}

export function serializeLaunchMeasureBlob(m: LaunchMeasureBlob): Buffer {
  return Buffer.concat([checkBytes(m.measure, 'measure', 32), checkBytes(m.mnonce, 'mnonce', 16)]);
}

/** Constant-time check of a reported MEASURE against the expected inputs. */
export function checkLaunchMeasurement(measure: Uint8Array, expected: MeasurementInput): boolean {
  return bytesEqual(checkBytes(measure, 'measure', 32), computeLaunchMeasurement(expected));
}
