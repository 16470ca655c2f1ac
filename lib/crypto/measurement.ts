/**
 * The launch digest GCTX.LD and the LAUNCH_MEASURE value (§4.1, §4.3):
 *   LD      = SHA-256(update_1 ‖ … ‖ update_n)   (plaintext of each LAUNCH_UPDATE_DATA/VMSA, in order)
 *   MEASURE = HMAC-SHA256(TIK, 0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ LE32(POLICY) ‖ LD ‖ MNONCE)
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { bytesEqual, copy, u32le } from './bytes.js';
import { checkBytes, checkObject, checkU8, checkU32 } from '../uapi/args.js';
import { invalidArgType, SevFormatError } from './errors.js';
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
    this.#hash.update(checkBytes('data', data));
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
  checkObject('input', m);
  return Buffer.concat([
    Buffer.from([ChannelContext.MEASURE, checkU8('apiMajor', m.apiMajor), checkU8('apiMinor', m.apiMinor), checkU8('build', m.build)]),
    u32le(checkU32('policy', m.policy)),
    checkBytes('digest', m.digest, 32),
    checkBytes('mnonce', m.mnonce, 16),
  ]);
}

export function computeLaunchMeasurement(m: MeasurementInput): Buffer {
  return hmacSha256(checkBytes('tik', m.tik, 16), measurementMessage(m));
}

/**
 * What LAUNCH_MEASURE returns (SEV API, LAUNCH_MEASURE: MEASURE[32] ‖ MNONCE[16]; the fields of
 * virtee/sev's `Measurement`). The host's `launchMeasure()` returns it, and every guest-owner
 * function that needs the measurement takes it as is.
 */
export interface LaunchMeasurement {
  /** HMAC-SHA256(TIK, 0x04 ‖ API ‖ BUILD ‖ POLICY ‖ launch digest ‖ MNONCE): 32 bytes. */
  measure: Uint8Array;
  /** The firmware's nonce: 16 bytes. */
  mnonce: Uint8Array;
}

/**
 * The 48 bytes MEASURE ‖ MNONCE (QEMU's `query-sev-launch-measure`, base64-decoded; the buffer
 * KVM_SEV_LAUNCH_MEASURE fills) as a {@link LaunchMeasurement}.
 */
export function parseLaunchMeasurement(bytes: Uint8Array): LaunchMeasurement {
  const b = checkBytes('bytes', bytes);
  if (b.length !== LAUNCH_MEASURE_SIZE) throw new SevFormatError(`LAUNCH_MEASURE output is ${LAUNCH_MEASURE_SIZE} bytes, got ${b.length}`);
  return { measure: copy(b.subarray(0, 32)), mnonce: copy(b.subarray(32)) };
}

/** MEASURE ‖ MNONCE, 48 bytes (what QEMU reports, base64-encoded). */
export function serializeLaunchMeasurement(m: LaunchMeasurement): Buffer {
  const v = checkLaunchMeasurementShape(m, 'measurement');
  return Buffer.concat([v.measure, v.mnonce]);
}

/**
 * Checks a {@link LaunchMeasurement} argument: an object with a 32-byte `measure` and a 16-byte
 * `mnonce`. A bare byte string gets an error that says how to make one.
 */
export function checkLaunchMeasurementShape(m: unknown, name: string): LaunchMeasurement {
  if (m instanceof Uint8Array) {
    throw invalidArgType(
      name,
      'a LaunchMeasurement { measure, mnonce } (what launchMeasure() returns; parseLaunchMeasurement() makes one from the 48 bytes QEMU reports)',
      m,
    );
  }
  checkObject(name, m);
  const o = m as Partial<LaunchMeasurement>;
  return { measure: checkBytes(`${name}.measure`, o.measure, 32), mnonce: checkBytes(`${name}.mnonce`, o.mnonce, 16) };
}

/** Constant-time check of a reported MEASURE against the expected inputs. */
export function checkLaunchMeasurement(measure: Uint8Array, expected: MeasurementInput): boolean {
  return bytesEqual(checkBytes('measure', measure, 32), computeLaunchMeasurement(expected));
}
