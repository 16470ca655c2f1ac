/**
 * The SEV certificate (0x824 bytes; SEV API spec appendix C; §7.1): codec, signing and verification as the
 * firmware and AMD's tools do them. The signed "body" is bytes 0x000..0x413; the hash is the one
 * named by the signer's algorithm; ECDSA r/s and ECC coordinates are 72-byte little-endian fields;
 * RSA signatures are PSS, stored little-endian.
 */
import type { KeyObject } from 'node:crypto';
import { bigIntToLe, copy, isAllZero, leToBigInt, reversed, view } from './bytes.js';
import { checkBytes, checkObject, checkU8, checkU16, checkU32 } from '../uapi/args.js';
import {
  SevAlgo,
  SevCurve,
  SevUsage,
  algoName,
  hashOfAlgo,
  isEccAlgo,
  isEcdhAlgo,
  isKnownUsage,
  isRsaAlgo,
  isValidAlgo,
  isValidUsage,
  usageName,
} from './cert-codes.js';
import { P384, ecdsaSignP384, ecdsaVerifyP384, isOnP384, isP384Key, p384PointOf, p384PublicKey } from './ecc.js';
import type { EcPoint, EcdsaSignature } from './ecc.js';
import { invalidArgType, invalidArgValue, SevCertError, SevFormatError } from './errors.js';
import type { CertCheck } from './errors.js';
import { rsaComponents, rsaPssSign, rsaPssVerify, rsaPublicKeyFromLe } from './rsa.js';
import { amdCertVerifier, isAmdCertificate } from './amd-cert.js';
import type { AmdCertificate } from './amd-cert.js';

export const SEV_CERT_SIZE = 0x824;
/** Bytes covered by the signatures. */
export const SEV_CERT_BODY_SIZE = 0x414;
export const SEV_PUBKEY_SIZE = 0x404;
export const SEV_SIG_SIZE = 0x200;
/** Width of one ECC coordinate / ECDSA r or s field. */
export const SEV_ECC_FIELD = 72;

const OFF = {
  version: 0x000,
  apiMajor: 0x004,
  apiMinor: 0x005,
  reserved: 0x006,
  usage: 0x008,
  algo: 0x00c,
  pubKey: 0x010,
  sig1: 0x414,
  sig2: 0x61c,
} as const;
/** Within a signature slot: usage u32, algo u32, signature[512]. */
const SLOT_SIZE = 8 + SEV_SIG_SIZE;

export interface SevEccPublicKey {
  readonly kind: 'ecc';
  readonly curve: number;
  /** 72-byte little-endian fields. */
  readonly qx: Buffer;
  readonly qy: Buffer;
  /** The 880 bytes after Qy (zero in every real certificate). */
  readonly reserved: Buffer;
}
export interface SevRsaPublicKey {
  readonly kind: 'rsa';
  readonly modulusBits: number;
  /** 512-byte little-endian fields. */
  readonly pubExp: Buffer;
  readonly modulus: Buffer;
}
/** A key region whose algorithm is neither RSA nor ECC (e.g. an empty certificate). */
export interface SevRawPublicKey {
  readonly kind: 'raw';
  readonly bytes: Buffer;
}
export type SevPublicKey = SevEccPublicKey | SevRsaPublicKey | SevRawPublicKey;

export interface SevSignatureSlot {
  readonly usage: number;
  readonly algo: number;
  /** 512 bytes: ECDSA `r[72] LE ‖ s[72] LE ‖ 0…`, or an RSA signature LE. */
  readonly sig: Buffer;
}

export interface SevCertificate {
  readonly format: 'sev';
  readonly version: number;
  readonly apiMajor: number;
  readonly apiMinor: number;
  /** u16 @6, 0 in real certificates; kept for bit-exact round trips. */
  readonly reserved: number;
  readonly pubKeyUsage: number;
  readonly pubKeyAlgo: number;
  readonly pubKey: SevPublicKey;
  readonly sig1: SevSignatureSlot;
  readonly sig2: SevSignatureSlot;
}

export const EMPTY_SLOT: SevSignatureSlot = Object.freeze({
  usage: SevUsage.INVALID,
  algo: SevAlgo.INVALID,
  sig: Buffer.alloc(SEV_SIG_SIZE),
});

export function isSevCertificate(x: unknown): x is SevCertificate {
  return typeof x === 'object' && x !== null && (x as { format?: unknown }).format === 'sev';
}

// ---- codec ------------------------------------------------------------------------------------

export function parseSevCert(bytes: Uint8Array): SevCertificate {
  const b = checkBytes('bytes', bytes);
  if (b.length !== SEV_CERT_SIZE) throw new SevFormatError(`a SEV certificate is ${SEV_CERT_SIZE} bytes, got ${b.length}`);
  const algo = b.readUInt32LE(OFF.algo);
  return {
    format: 'sev',
    version: b.readUInt32LE(OFF.version),
    apiMajor: b[OFF.apiMajor]!,
    apiMinor: b[OFF.apiMinor]!,
    reserved: b.readUInt16LE(OFF.reserved),
    pubKeyUsage: b.readUInt32LE(OFF.usage),
    pubKeyAlgo: algo,
    pubKey: parsePubKey(b.subarray(OFF.pubKey, OFF.pubKey + SEV_PUBKEY_SIZE), algo),
    sig1: parseSlot(b.subarray(OFF.sig1, OFF.sig1 + SLOT_SIZE)),
    sig2: parseSlot(b.subarray(OFF.sig2, OFF.sig2 + SLOT_SIZE)),
  };
}

/** Layout follows the algorithm: RSA algos ⇒ RSA layout, ECDSA/ECDH ⇒ ECC layout, else raw. */
function parsePubKey(k: Buffer, algo: number): SevPublicKey {
  if (isEccAlgo(algo)) {
    return {
      kind: 'ecc',
      curve: k.readUInt32LE(0),
      qx: copy(k.subarray(4, 4 + SEV_ECC_FIELD)),
      qy: copy(k.subarray(4 + SEV_ECC_FIELD, 4 + 2 * SEV_ECC_FIELD)),
      reserved: copy(k.subarray(4 + 2 * SEV_ECC_FIELD)),
    };
  }
  if (isRsaAlgo(algo)) {
    return { kind: 'rsa', modulusBits: k.readUInt32LE(0), pubExp: copy(k.subarray(4, 516)), modulus: copy(k.subarray(516, 1028)) };
  }
  return { kind: 'raw', bytes: copy(k) };
}

function parseSlot(s: Buffer): SevSignatureSlot {
  return { usage: s.readUInt32LE(0), algo: s.readUInt32LE(4), sig: copy(s.subarray(8, 8 + SEV_SIG_SIZE)) };
}

export function serializeSevCert(cert: SevCertificate): Buffer {
  checkObject('cert', cert);
  const out = Buffer.alloc(SEV_CERT_SIZE);
  out.writeUInt32LE(checkU32('cert.version', cert.version), OFF.version);
  out[OFF.apiMajor] = checkU8('cert.apiMajor', cert.apiMajor);
  out[OFF.apiMinor] = checkU8('cert.apiMinor', cert.apiMinor);
  out.writeUInt16LE(checkU16('cert.reserved', cert.reserved), OFF.reserved);
  out.writeUInt32LE(checkU32('cert.pubKeyUsage', cert.pubKeyUsage), OFF.usage);
  out.writeUInt32LE(checkU32('cert.pubKeyAlgo', cert.pubKeyAlgo), OFF.algo);
  writePubKey(out.subarray(OFF.pubKey, OFF.pubKey + SEV_PUBKEY_SIZE), cert.pubKey);
  writeSlot(out.subarray(OFF.sig1, OFF.sig1 + SLOT_SIZE), cert.sig1, 'cert.sig1');
  writeSlot(out.subarray(OFF.sig2, OFF.sig2 + SLOT_SIZE), cert.sig2, 'cert.sig2');
  return out;
}

function writePubKey(k: Buffer, pk: SevPublicKey): void {
  checkObject('cert.pubKey', pk);
  switch (pk.kind) {
    case 'ecc':
      k.writeUInt32LE(checkU32('cert.pubKey.curve', pk.curve), 0);
      checkBytes('cert.pubKey.qx', pk.qx, SEV_ECC_FIELD).copy(k, 4);
      checkBytes('cert.pubKey.qy', pk.qy, SEV_ECC_FIELD).copy(k, 4 + SEV_ECC_FIELD);
      checkBytes('cert.pubKey.reserved', pk.reserved, SEV_PUBKEY_SIZE - 4 - 2 * SEV_ECC_FIELD).copy(k, 4 + 2 * SEV_ECC_FIELD);
      return;
    case 'rsa':
      k.writeUInt32LE(checkU32('cert.pubKey.modulusBits', pk.modulusBits), 0);
      checkBytes('cert.pubKey.pubExp', pk.pubExp, 512).copy(k, 4);
      checkBytes('cert.pubKey.modulus', pk.modulus, 512).copy(k, 516);
      return;
    case 'raw':
      checkBytes('cert.pubKey.bytes', pk.bytes, SEV_PUBKEY_SIZE).copy(k);
      return;
    default:
      throw invalidArgValue('cert.pubKey.kind', (pk as { kind: unknown }).kind, "must be 'ecc', 'rsa' or 'raw'");
  }
}

function writeSlot(s: Buffer, slot: SevSignatureSlot, name: string): void {
  checkObject(name, slot);
  s.writeUInt32LE(checkU32(`${name}.usage`, slot.usage), 0);
  s.writeUInt32LE(checkU32(`${name}.algo`, slot.algo), 4);
  checkBytes(`${name}.sig`, slot.sig, SEV_SIG_SIZE).copy(s, 8);
}

/** Bytes the signatures cover (§7.1). */
export function sevCertBody(cert: SevCertificate | Uint8Array): Buffer {
  const bytes = cert instanceof Uint8Array ? checkBytes('cert', cert, SEV_CERT_SIZE) : serializeSevCert(cert);
  return bytes.subarray(0, SEV_CERT_BODY_SIZE);
}

export function toSevCert(x: SevCertificate | Uint8Array, name = 'cert'): SevCertificate {
  if (x instanceof Uint8Array) return parseSevCert(x);
  if (isSevCertificate(x)) return x;
  throw invalidArgType(name, 'a SevCertificate or a Uint8Array', x);
}

// ---- keys -----------------------------------------------------------------------------------

/** The ECC point of a certificate, or a reason why it is not a usable P-384 point. */
export function sevCertPoint(cert: SevCertificate): { point: EcPoint } | { error: string } {
  const pk = cert.pubKey;
  if (pk.kind !== 'ecc') return { error: `algorithm ${algoName(cert.pubKeyAlgo)} has no ECC key` };
  if (pk.curve !== SevCurve.P384) return { error: `curve ${pk.curve} is not P-384 (2)` };
  // 72-byte fields hold 48 significant bytes.
  if (!isAllZero(pk.qx.subarray(P384.size)) || !isAllZero(pk.qy.subarray(P384.size))) {
    return { error: 'coordinate wider than 48 bytes' };
  }
  const point = { x: leToBigInt(pk.qx), y: leToBigInt(pk.qy) };
  if (!isOnP384(point)) return { error: 'point is not on P-384' };
  return { point };
}

/** node:crypto public key of a certificate; throws SevCertError('invalid-public-key'). */
export function sevCertPublicKey(cert: SevCertificate): KeyObject {
  const pk = cert.pubKey;
  if (pk.kind === 'rsa') {
    if (pk.modulusBits !== 2048 && pk.modulusBits !== 4096) {
      throw new SevCertError('invalid-public-key', `RSA modulus size ${pk.modulusBits} is not 2048 or 4096`);
    }
    try {
      return rsaPublicKeyFromLe(pk.modulus.subarray(0, pk.modulusBits / 8), pk.pubExp);
    } catch (e) {
      throw new SevCertError('invalid-public-key', `RSA key rejected: ${(e as Error).message}`);
    }
  }
  const r = sevCertPoint(cert);
  if ('error' in r) throw new SevCertError('invalid-public-key', r.error);
  return p384PublicKey(r.point);
}

/**
 * Body checks the firmware applies to every certificate it uses (§7.1): version 1, a known
 * usage, a valid algorithm, a usable key (P-384 on-curve point, or 2048/4096-bit RSA).
 */
export function checkSevCertBody(cert: SevCertificate): CertCheck {
  if (cert.version !== 1) return { ok: false, reason: 'bad-version', detail: `version is ${cert.version}, not 1` };
  if (!isKnownUsage(cert.pubKeyUsage) || cert.pubKeyUsage === SevUsage.INVALID) {
    return { ok: false, reason: 'wrong-usage', detail: `usage ${usageName(cert.pubKeyUsage)} is not a key usage` };
  }
  if (!isValidAlgo(cert.pubKeyAlgo)) {
    return { ok: false, reason: 'invalid-algorithm', detail: `algorithm ${algoName(cert.pubKeyAlgo)} is not valid` };
  }
  try {
    sevCertPublicKey(cert);
  } catch (e) {
    if (e instanceof SevCertError) return { ok: false, reason: e.reason, detail: e.message };
    throw e;
  }
  return { ok: true, slot: 0 };
}

/**
 * LAUNCH_START's check of the guest owner's DH certificate (§3.3 step 1): version 1, usage PDH,
 * algo ECDH_SHA256, curve P-384, point on the curve. Its signatures are not checked.
 */
export function checkGodhCert(cert: SevCertificate): CertCheck {
  if (cert.version !== 1) return { ok: false, reason: 'bad-version', detail: `version is ${cert.version}, not 1` };
  if (cert.pubKeyUsage !== SevUsage.PDH) {
    return { ok: false, reason: 'wrong-usage', detail: `usage ${usageName(cert.pubKeyUsage)} is not PDH` };
  }
  if (cert.pubKeyAlgo !== SevAlgo.ECDH_SHA256) {
    return { ok: false, reason: 'invalid-algorithm', detail: `algorithm ${algoName(cert.pubKeyAlgo)} is not ECDH_SHA256` };
  }
  const r = sevCertPoint(cert);
  if ('error' in r) return { ok: false, reason: 'invalid-public-key', detail: r.error };
  return { ok: true, slot: 0 };
}

// ---- creation and signing -------------------------------------------------------------------

export interface CreateSevCertOptions {
  usage: number;
  /** Public (or private) key: P-384 EC or RSA. */
  publicKey: KeyObject;
  /** Default: ECDH_SHA256 for a PDH, ECDSA_SHA256 for other EC keys, RSA_SHA256/384 by modulus size. */
  algo?: number;
  apiMajor?: number;
  apiMinor?: number;
}

function defaultAlgo(key: KeyObject, usage: number): number {
  if (key.asymmetricKeyType === 'rsa') return rsaComponents(key).bits > 2048 ? SevAlgo.RSA_SHA384 : SevAlgo.RSA_SHA256;
  if (isP384Key(key)) return usage === SevUsage.PDH ? SevAlgo.ECDH_SHA256 : SevAlgo.ECDSA_SHA256;
  throw invalidArgValue('publicKey', key.asymmetricKeyType, 'must be a P-384 EC key or an RSA key');
}

/** An unsigned certificate (both slots empty) holding `publicKey`. */
export function createSevCert(opts: CreateSevCertOptions): SevCertificate {
  checkObject('options', opts);
  const usage = checkU32('options.usage', opts.usage);
  const key = opts.publicKey;
  const algo = opts.algo === undefined ? defaultAlgo(key, usage) : checkU32('options.algo', opts.algo);
  let pubKey: SevPublicKey;
  if (isEccAlgo(algo)) {
    if (!isP384Key(key)) throw invalidArgValue('options.publicKey', key.asymmetricKeyType, `must be a P-384 key for ${algoName(algo)}`);
    const { x, y } = p384PointOf(key);
    pubKey = {
      kind: 'ecc',
      curve: SevCurve.P384,
      qx: bigIntToLe(x, SEV_ECC_FIELD),
      qy: bigIntToLe(y, SEV_ECC_FIELD),
      reserved: Buffer.alloc(SEV_PUBKEY_SIZE - 4 - 2 * SEV_ECC_FIELD),
    };
  } else if (isRsaAlgo(algo)) {
    const { n, e, bits } = rsaComponents(key);
    const mod = Buffer.alloc(512);
    reversed(n).copy(mod);
    const exp = Buffer.alloc(512);
    reversed(e).copy(exp);
    pubKey = { kind: 'rsa', modulusBits: bits, pubExp: exp, modulus: mod };
  } else {
    throw invalidArgValue('options.algo', algo, 'must be an RSA, ECDSA or ECDH algorithm');
  }
  return {
    format: 'sev',
    version: 1,
    apiMajor: checkU8('options.apiMajor', opts.apiMajor ?? 0),
    apiMinor: checkU8('options.apiMinor', opts.apiMinor ?? 0),
    reserved: 0,
    pubKeyUsage: usage,
    pubKeyAlgo: algo,
    pubKey,
    sig1: EMPTY_SLOT,
    sig2: EMPTY_SLOT,
  };
}

export interface SignSevCertOptions {
  /** Signer's algorithm. Default: ECDSA_SHA256 for P-384, RSA_SHA256 (2048) / RSA_SHA384 (4096). */
  algo?: number;
  /** Slot to fill. Default: the first empty slot, or the one already holding this signer. */
  slot?: 1 | 2;
}

/**
 * Sign `cert`'s body with `signerPrivateKey`, whose certificate has key usage `usage`; returns a
 * new certificate with the slot filled with (usage, algo, signature).
 */
export function signSevCert(
  cert: SevCertificate,
  signerPrivateKey: KeyObject,
  usage: number,
  options: SignSevCertOptions = {},
): SevCertificate {
  const c = toSevCert(cert);
  checkU32('usage', usage);
  if (signerPrivateKey?.type !== 'private') throw invalidArgType('signerPrivateKey', 'a private KeyObject', signerPrivateKey);
  const algo = options.algo === undefined ? defaultAlgo(signerPrivateKey, SevUsage.INVALID) : checkU32('options.algo', options.algo);
  if (isEcdhAlgo(algo)) throw invalidArgValue('options.algo', algo, 'must be a signature algorithm (ECDH keys do not sign)');
  const slotNo = options.slot ?? pickSlot(c, usage, algo);
  const body = sevCertBody(c);
  const hash = hashOfAlgo(algo);
  const sig = Buffer.alloc(SEV_SIG_SIZE);
  if (isRsaAlgo(algo)) {
    if (signerPrivateKey.asymmetricKeyType !== 'rsa')
      throw invalidArgValue('signerPrivateKey', signerPrivateKey.asymmetricKeyType, `must be RSA for ${algoName(algo)}`);
    reversed(rsaPssSign(hash, body, signerPrivateKey)).copy(sig);
  } else if (algo === SevAlgo.ECDSA_SHA256 || algo === SevAlgo.ECDSA_SHA384) {
    if (!isP384Key(signerPrivateKey))
      throw invalidArgValue('signerPrivateKey', signerPrivateKey.asymmetricKeyType, `must be P-384 for ${algoName(algo)}`);
    encodeEcdsaSignature(ecdsaSignP384(hash, body, signerPrivateKey)).copy(sig);
  } else {
    throw invalidArgValue('options.algo', algo, 'must be an RSA or ECDSA algorithm');
  }
  const slot: SevSignatureSlot = { usage, algo, sig };
  return slotNo === 1 ? { ...c, sig1: slot } : { ...c, sig2: slot };
}

function pickSlot(c: SevCertificate, usage: number, algo: number): 1 | 2 {
  const fits = (s: SevSignatureSlot): boolean =>
    (s.usage === SevUsage.INVALID && s.algo === SevAlgo.INVALID) || (s.usage === usage && s.algo === algo);
  if (fits(c.sig1)) return 1;
  if (fits(c.sig2)) return 2;
  throw invalidArgValue('cert', `slots ${usageName(c.sig1.usage)}, ${usageName(c.sig2.usage)}`, 'has no free signature slot');
}

/** r, s as 72-byte little-endian fields followed by zeros (512 bytes). */
export function encodeEcdsaSignature(sig: EcdsaSignature): Buffer {
  const out = Buffer.alloc(SEV_SIG_SIZE);
  bigIntToLe(sig.r, SEV_ECC_FIELD).copy(out, 0);
  bigIntToLe(sig.s, SEV_ECC_FIELD).copy(out, SEV_ECC_FIELD);
  return out;
}

export function decodeEcdsaSignature(sig: Uint8Array): EcdsaSignature {
  const b = view(sig);
  return { r: leToBigInt(b.subarray(0, SEV_ECC_FIELD)), s: leToBigInt(b.subarray(SEV_ECC_FIELD, 2 * SEV_ECC_FIELD)) };
}

// ---- verification ---------------------------------------------------------------------------

/** What verifies a signature: the signer's (usage, algo) as they must appear in the slot, and its key. */
export interface SevVerifier {
  readonly usage: number;
  readonly algo: number;
  readonly publicKey: KeyObject;
}

export type SevSigner = SevCertificate | AmdCertificate | SevVerifier;

/** The verifier of a SEV or AMD certificate; throws SevCertError if its key is unusable. */
export function verifierOf(signer: SevSigner): SevVerifier {
  if (isSevCertificate(signer)) {
    return { usage: signer.pubKeyUsage, algo: signer.pubKeyAlgo, publicKey: sevCertPublicKey(signer) };
  }
  if (isAmdCertificate(signer)) return amdCertVerifier(signer);
  checkObject('signer', signer);
  return signer;
}

export interface VerifySevCertOptions {
  /** Also run {@link checkSevCertBody} on `cert` after the signature (firmware order). Default true. */
  checkBody?: boolean;
}

/**
 * Check that `signer` signed `cert` (§7.1, firmware order): a malformed slot (usage valid XOR algo
 * valid) ⇒ malformed-signature-slot; no slot with the signer's (usage, algo) ⇒
 * no-matching-signature; a matching slot that does not verify ⇒ bad-signature; then the body.
 */
export function verifySevCert(cert: SevCertificate | Uint8Array, signer: SevSigner, options: VerifySevCertOptions = {}): CertCheck {
  const c = toSevCert(cert);
  let v: SevVerifier;
  try {
    v = verifierOf(signer);
  } catch (e) {
    if (e instanceof SevCertError) return { ok: false, reason: 'invalid-signer-key', detail: e.message };
    throw e;
  }
  const slots: Array<[1 | 2, SevSignatureSlot]> = [
    [1, c.sig1],
    [2, c.sig2],
  ];
  for (const [n, s] of slots) {
    if (isValidUsage(s.usage) !== isValidAlgo(s.algo)) {
      return {
        ok: false,
        reason: 'malformed-signature-slot',
        detail: `slot ${n} has usage ${usageName(s.usage)} with algorithm ${algoName(s.algo)}`,
      };
    }
  }
  const matching = slots.filter(([, s]) => s.usage === v.usage && s.algo === v.algo);
  if (matching.length === 0) {
    return { ok: false, reason: 'no-matching-signature', detail: `no slot signed by ${usageName(v.usage)}/${algoName(v.algo)}` };
  }
  const body = sevCertBody(c);
  let verified: 1 | 2 | undefined;
  for (const [n, s] of matching) {
    if (verifySlot(body, s, v)) {
      verified = n;
      break;
    }
  }
  if (verified === undefined) {
    return { ok: false, reason: 'bad-signature', detail: `slot ${matching[0]![0]} does not verify under the ${usageName(v.usage)} key` };
  }
  if (options.checkBody ?? true) {
    const body = checkSevCertBody(c);
    if (!body.ok) return body;
  }
  return { ok: true, slot: verified };
}

function verifySlot(body: Buffer, s: SevSignatureSlot, v: SevVerifier): boolean {
  const hash = hashOfAlgo(v.algo);
  if (isRsaAlgo(v.algo)) {
    if (v.publicKey.asymmetricKeyType !== 'rsa') return false;
    const bytes = rsaComponents(v.publicKey).bits / 8;
    if (bytes > SEV_SIG_SIZE || !isAllZero(s.sig.subarray(bytes))) return false;
    return rsaPssVerify(hash, body, v.publicKey, reversed(s.sig.subarray(0, bytes)));
  }
  if (v.algo === SevAlgo.ECDSA_SHA256 || v.algo === SevAlgo.ECDSA_SHA384) {
    if (!isP384Key(v.publicKey)) return false;
    return ecdsaVerifyP384(hash, body, v.publicKey, decodeEcdsaSignature(s.sig));
  }
  return false; // ECDH keys do not sign
}
