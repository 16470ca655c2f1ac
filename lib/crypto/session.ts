/**
 * The LAUNCH_START / RECEIVE_START session (`sev_session_buf`, 128 bytes; §3.2,
 * §3.3): TEK ‖ TIK wrapped with AES-128-CTR under KEK, WRAP_MAC = HMAC(KIK, WRAP_TK) and
 * POLICY_MAC = HMAC(TIK, LE32(policy)); KEK/KIK come from the KDF over Z = ECDH(GODH, PDH).
 */
import { randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { aes128Ctr } from './aes-ctr.js';
import { bytesEqual, copy, u32le } from './bytes.js';
import { checkBytes, checkObject, checkU32 } from '../uapi/args.js';
import { ecdhP384 } from './ecc.js';
import { SevCertError, SevFormatError, SevMacError } from './errors.js';
import { hmacSha256 } from './hmac.js';
import { deriveSessionKeys } from './kdf.js';
import type { SessionKeys } from './kdf.js';
import { checkGodhCert, sevCertPublicKey, toSevCert } from './sev-cert.js';
import type { SevCertificate } from './sev-cert.js';

export const SESSION_SIZE = 0x80;
const OFF = { nonce: 0x00, wrapTk: 0x10, wrapIv: 0x30, wrapMac: 0x40, policyMac: 0x60 } as const;

export interface SevSession {
  /** 16 bytes: KDF context of the master secret. */
  readonly nonce: Buffer;
  /** 32 bytes: AES-128-CTR(KEK, WRAP_IV, TEK ‖ TIK). */
  readonly wrapTk: Buffer;
  /** 16 bytes: the initial counter block. */
  readonly wrapIv: Buffer;
  /** 32 bytes: HMAC-SHA256(KIK, WRAP_TK). */
  readonly wrapMac: Buffer;
  /** 32 bytes: HMAC-SHA256(TIK, LE32(policy)). */
  readonly policyMac: Buffer;
}

export function parseSession(bytes: Uint8Array): SevSession {
  const b = checkBytes('bytes', bytes);
  if (b.length !== SESSION_SIZE) throw new SevFormatError(`a session blob is ${SESSION_SIZE} bytes, got ${b.length}`);
  return {
    nonce: copy(b.subarray(OFF.nonce, OFF.wrapTk)),
    wrapTk: copy(b.subarray(OFF.wrapTk, OFF.wrapIv)),
    wrapIv: copy(b.subarray(OFF.wrapIv, OFF.wrapMac)),
    wrapMac: copy(b.subarray(OFF.wrapMac, OFF.policyMac)),
    policyMac: copy(b.subarray(OFF.policyMac, SESSION_SIZE)),
  };
}

export function serializeSession(s: SevSession): Buffer {
  checkObject('session', s);
  return Buffer.concat([
    checkBytes('session.nonce', s.nonce, 16),
    checkBytes('session.wrapTk', s.wrapTk, 32),
    checkBytes('session.wrapIv', s.wrapIv, 16),
    checkBytes('session.wrapMac', s.wrapMac, 32),
    checkBytes('session.policyMac', s.policyMac, 32),
  ]);
}

/** POLICY_MAC = HMAC-SHA256(TIK, policy as u32 LE) (§3.2; keyed with TIK, not KIK: §11.3). */
export function computePolicyMac(tik: Uint8Array, policy: number): Buffer {
  return hmacSha256(checkBytes('tik', tik, 16), u32le(checkU32('policy', policy)));
}

export interface WrapSessionOptions {
  /** Z: the ECDH x-coordinate (48 bytes big-endian) — any length is accepted (V3 uses 16). */
  sharedSecret: Uint8Array;
  tek: Uint8Array;
  tik: Uint8Array;
  policy: number;
  /** Default: 16 random bytes. */
  nonce?: Uint8Array;
  /** Default: 16 random bytes. */
  wrapIv?: Uint8Array;
}

/** Guest-owner side (also SEND_START's firmware side): build the session. */
export function wrapSession(opts: WrapSessionOptions): SevSession & { keys: SessionKeys } {
  checkObject('options', opts);
  const tek = checkBytes('options.tek', opts.tek, 16);
  const tik = checkBytes('options.tik', opts.tik, 16);
  const nonce = opts.nonce === undefined ? randomBytes(16) : copy(checkBytes('options.nonce', opts.nonce, 16));
  const wrapIv = opts.wrapIv === undefined ? randomBytes(16) : copy(checkBytes('options.wrapIv', opts.wrapIv, 16));
  const keys = deriveSessionKeys(checkBytes('options.sharedSecret', opts.sharedSecret), nonce);
  const wrapTk = aes128Ctr(keys.kek, wrapIv, Buffer.concat([tek, tik]));
  return {
    nonce,
    wrapTk,
    wrapIv,
    wrapMac: hmacSha256(keys.kik, wrapTk),
    policyMac: computePolicyMac(tik, opts.policy),
    keys,
  };
}

export interface UnwrapSessionOptions {
  session: SevSession | Uint8Array;
  sharedSecret: Uint8Array;
  /** The policy LAUNCH_START was given; its MAC must match. */
  policy: number;
}

/**
 * Platform side (§3.4 step 3): check WRAP_MAC with KIK, unwrap TEK ‖ TIK, check POLICY_MAC with
 * TIK. A mismatch throws SevMacError with `mac` 'wrap' or 'policy' (firmware: BAD_MEASUREMENT).
 */
export function unwrapSession(opts: UnwrapSessionOptions): { tek: Buffer; tik: Buffer; keys: SessionKeys } {
  checkObject('options', opts);
  const s = opts.session instanceof Uint8Array ? parseSession(opts.session) : opts.session;
  checkObject('options.session', s);
  const policy = checkU32('options.policy', opts.policy);
  const keys = deriveSessionKeys(checkBytes('options.sharedSecret', opts.sharedSecret), checkBytes('session.nonce', s.nonce, 16));
  if (!bytesEqual(hmacSha256(keys.kik, checkBytes('session.wrapTk', s.wrapTk, 32)), checkBytes('session.wrapMac', s.wrapMac, 32))) {
    throw new SevMacError('wrap', 'session WRAP_MAC does not match (wrong key agreement, nonce or wrapped keys)');
  }
  const tk = aes128Ctr(keys.kek, checkBytes('session.wrapIv', s.wrapIv, 16), s.wrapTk);
  const tek = tk.subarray(0, 16);
  const tik = tk.subarray(16, 32);
  if (!bytesEqual(computePolicyMac(tik, policy), checkBytes('session.policyMac', s.policyMac, 32))) {
    throw new SevMacError('policy', `session POLICY_MAC does not match policy 0x${policy.toString(16)}`);
  }
  return { tek, tik, keys };
}

export interface OpenLaunchSessionOptions {
  session: SevSession | Uint8Array;
  /** The guest owner's DH certificate (LAUNCH_START dh_cert; RECEIVE_START: the sender's PDH). */
  godhCert: SevCertificate | Uint8Array;
  /** The platform's PDH private key. */
  pdhPrivateKey: KeyObject;
  policy: number;
}

/**
 * The firmware's LAUNCH_START channel: GODH check (SevCertError ⇒ INVALID_CERTIFICATE), ECDH with
 * the PDH key, then {@link unwrapSession} (SevMacError ⇒ BAD_MEASUREMENT).
 */
export function openLaunchSession(opts: OpenLaunchSessionOptions): { tek: Buffer; tik: Buffer; keys: SessionKeys } {
  checkObject('options', opts);
  const godh = toSevCert(opts.godhCert, 'options.godhCert');
  const check = checkGodhCert(godh);
  if (!check.ok) throw new SevCertError(check.reason, `GODH certificate rejected: ${check.detail}`);
  const z = ecdhP384(opts.pdhPrivateKey, sevCertPublicKey(godh));
  return unwrapSession({ session: opts.session, sharedSecret: z, policy: opts.policy });
}
