/**
 * Guest owner: the LAUNCH_START session (docs/sev-reference.md §3). Makes a fresh P-384 GODH key,
 * Z = ECDH(GODH, PDH), random TEK/TIK/NONCE/WRAP_IV, and the 128-byte session blob.
 */
import { randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { copy } from '../crypto/bytes.js';
import { checkBytes, checkObject, checkU32 } from '../uapi/args.js';
import { SevAlgo, SevUsage, isEcdhAlgo } from '../crypto/cert-codes.js';
import { ecdhP384, generateP384, isP384Key } from '../crypto/ecc.js';
import { invalidArgValue, SevCertError } from '../crypto/errors.js';
import { SEV_POLICY_RESERVED_MASK } from '../crypto/policy.js';
import { createSevCert, serializeSevCert, sevCertPublicKey, toSevCert } from '../crypto/sev-cert.js';
import type { SevCertificate } from '../crypto/sev-cert.js';
import { serializeSession, wrapSession } from '../crypto/session.js';

export interface CreateSessionOptions {
  /** The platform's PDH (verify its chain first with verifyChain). */
  pdh: SevCertificate | Uint8Array;
  /** Guest policy; it is MAC'd into the session and must be passed unchanged to LAUNCH_START. */
  policy: number;
  /** Defaults: 16 random bytes each. */
  tek?: Uint8Array;
  tik?: Uint8Array;
  nonce?: Uint8Array;
  wrapIv?: Uint8Array;
  /** P-384 private key of the guest owner's DH pair; default a fresh one. */
  godhKey?: KeyObject;
}

export interface LaunchSession {
  /** 128 bytes: LAUNCH_START's session_uaddr (QEMU `session-file`). */
  session: Buffer;
  /** 0x824 bytes: LAUNCH_START's dh_uaddr (QEMU `dh-cert-file`); unsigned, as the firmware ignores its signatures. */
  godhCert: Buffer;
  /** Keep secret: needed to verify the measurement (TIK) and build secrets (TEK, TIK). */
  tek: Buffer;
  tik: Buffer;
  godhPrivateKey: KeyObject;
  policy: number;
}

export function createSession(opts: CreateSessionOptions): LaunchSession {
  checkObject('options', opts);
  const pdh = toSevCert(opts.pdh, 'options.pdh');
  const policy = checkU32('options.policy', opts.policy);
  // The firmware would refuse it with POLICY_FAILURE (docs/sev-reference.md §1): fail here rather than at launch.
  if ((policy & SEV_POLICY_RESERVED_MASK) !== 0) throw invalidArgValue('options.policy', policy, 'sets reserved bits 6-15');
  if (pdh.pubKeyUsage !== SevUsage.PDH || !isEcdhAlgo(pdh.pubKeyAlgo)) {
    throw new SevCertError('wrong-usage', 'options.pdh is not a PDH (usage 0x1003, ECDH) certificate');
  }
  const pdhKey = sevCertPublicKey(pdh); // SevCertError('invalid-public-key') for a bad point
  const godhKey = opts.godhKey ?? generateP384().privateKey;
  if (!isP384Key(godhKey) || godhKey.type !== 'private')
    throw invalidArgValue('options.godhKey', godhKey?.asymmetricKeyType, 'must be a P-384 private key');
  const tek = opts.tek === undefined ? randomBytes(16) : copy(checkBytes('options.tek', opts.tek, 16));
  const tik = opts.tik === undefined ? randomBytes(16) : copy(checkBytes('options.tik', opts.tik, 16));
  const s = wrapSession({ sharedSecret: ecdhP384(godhKey, pdhKey), tek, tik, policy, nonce: opts.nonce, wrapIv: opts.wrapIv });
  const godh = createSevCert({
    usage: SevUsage.PDH,
    algo: SevAlgo.ECDH_SHA256,
    publicKey: godhKey,
    apiMajor: pdh.apiMajor,
    apiMinor: pdh.apiMinor,
  });
  return { session: serializeSession(s), godhCert: serializeSevCert(godh), tek, tik, godhPrivateKey: godhKey, policy };
}
