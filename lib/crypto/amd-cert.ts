/**
 * The AMD certificate format of the ARK and ASK (SEV API spec appendix B; §7.2): codec and RSA-PSS
 * signatures. Signed bytes run from offset 0 to the end of the modulus; the hash is SHA-256 for a
 * 2048-bit signer, SHA-384 for a 4096-bit one; salt = hash length.
 */
import type { KeyObject } from 'node:crypto';
import { bytesEqual, copy, reversed } from './bytes.js';
import { checkBytes, checkObject, checkU32 } from '../uapi/args.js';
import { SevAlgo, SevUsage } from './cert-codes.js';
import { invalidArgType, invalidArgValue, SevCertError, SevFormatError } from './errors.js';
import type { CertCheck } from './errors.js';
import { rsaComponents, rsaPssSign, rsaPssVerify, rsaPublicKeyFromLe } from './rsa.js';

export const AMD_CERT_HEADER_SIZE = 0x40;
export const AMD_KEY_ID_SIZE = 16;

export interface AmdCertificate {
  readonly format: 'amd';
  readonly version: number;
  readonly keyId: Buffer;
  /** Key id of the signer (== keyId for the self-signed ARK). */
  readonly certifyingId: Buffer;
  /** ARK 0x00, ASK 0x13. */
  readonly keyUsage: number;
  /** 16 bytes @0x28. */
  readonly reserved: Buffer;
  readonly pubExpBits: number;
  readonly modulusBits: number;
  /** Little-endian, pubExpBits/8 bytes. */
  readonly pubExp: Buffer;
  /** Little-endian, modulusBits/8 bytes. */
  readonly modulus: Buffer;
  /** Little-endian, modulusBits/8 bytes. */
  readonly signature: Buffer;
}

export function isAmdCertificate(x: unknown): x is AmdCertificate {
  return typeof x === 'object' && x !== null && (x as { format?: unknown }).format === 'amd';
}

/** Total size a certificate starting at `bytes` declares (needs the 0x40-byte header). */
export function amdCertLength(bytes: Uint8Array): number {
  const b = checkBytes('bytes', bytes);
  if (b.length < AMD_CERT_HEADER_SIZE)
    throw new SevFormatError(`an AMD certificate header is ${AMD_CERT_HEADER_SIZE} bytes, got ${b.length}`);
  const pe = b.readUInt32LE(0x38);
  const mod = b.readUInt32LE(0x3c);
  if (pe === 0 || pe % 8 !== 0 || pe > 4096 || mod === 0 || mod % 8 !== 0 || mod > 4096) {
    throw new SevFormatError(`AMD certificate sizes are not usable (pubexp ${pe} bits, modulus ${mod} bits)`);
  }
  return AMD_CERT_HEADER_SIZE + pe / 8 + 2 * (mod / 8);
}

export function parseAmdCert(bytes: Uint8Array): AmdCertificate {
  const b = checkBytes('bytes', bytes);
  const len = amdCertLength(b);
  if (b.length !== len) throw new SevFormatError(`this AMD certificate is ${len} bytes, got ${b.length}`);
  const pe = b.readUInt32LE(0x38) / 8;
  const m = b.readUInt32LE(0x3c) / 8;
  const o = AMD_CERT_HEADER_SIZE;
  return {
    format: 'amd',
    version: b.readUInt32LE(0),
    keyId: copy(b.subarray(0x04, 0x14)),
    certifyingId: copy(b.subarray(0x14, 0x24)),
    keyUsage: b.readUInt32LE(0x24),
    reserved: copy(b.subarray(0x28, 0x38)),
    pubExpBits: pe * 8,
    modulusBits: m * 8,
    pubExp: copy(b.subarray(o, o + pe)),
    modulus: copy(b.subarray(o + pe, o + pe + m)),
    signature: copy(b.subarray(o + pe + m, o + pe + 2 * m)),
  };
}

/** Split concatenated AMD certificates (e.g. SEND_START's ASK ‖ ARK). */
export function splitAmdCerts(bytes: Uint8Array): AmdCertificate[] {
  const b = checkBytes('bytes', bytes);
  const out: AmdCertificate[] = [];
  for (let off = 0; off < b.length;) {
    const len = amdCertLength(b.subarray(off));
    if (off + len > b.length) throw new SevFormatError(`AMD certificate at offset ${off} is truncated`);
    out.push(parseAmdCert(b.subarray(off, off + len)));
    off += len;
  }
  return out;
}

export function serializeAmdCert(cert: AmdCertificate): Buffer {
  checkObject('cert', cert);
  const peBits = checkU32('cert.pubExpBits', cert.pubExpBits);
  const mBits = checkU32('cert.modulusBits', cert.modulusBits);
  if (peBits % 8 !== 0 || mBits % 8 !== 0)
    throw invalidArgValue('cert', `${peBits}/${mBits} bits`, 'key sizes must be multiples of 8 bits');
  const pe = peBits / 8;
  const m = mBits / 8;
  const out = Buffer.alloc(AMD_CERT_HEADER_SIZE + pe + 2 * m);
  out.writeUInt32LE(checkU32('cert.version', cert.version), 0);
  checkBytes('cert.keyId', cert.keyId, AMD_KEY_ID_SIZE).copy(out, 0x04);
  checkBytes('cert.certifyingId', cert.certifyingId, AMD_KEY_ID_SIZE).copy(out, 0x14);
  out.writeUInt32LE(checkU32('cert.keyUsage', cert.keyUsage), 0x24);
  checkBytes('cert.reserved', cert.reserved, 16).copy(out, 0x28);
  out.writeUInt32LE(peBits, 0x38);
  out.writeUInt32LE(mBits, 0x3c);
  checkBytes('cert.pubExp', cert.pubExp, pe).copy(out, AMD_CERT_HEADER_SIZE);
  checkBytes('cert.modulus', cert.modulus, m).copy(out, AMD_CERT_HEADER_SIZE + pe);
  checkBytes('cert.signature', cert.signature, m).copy(out, AMD_CERT_HEADER_SIZE + pe + m);
  return out;
}

export function toAmdCert(x: AmdCertificate | Uint8Array, name = 'cert'): AmdCertificate {
  if (x instanceof Uint8Array) return parseAmdCert(x);
  if (isAmdCertificate(x)) return x;
  throw invalidArgType(name, 'an AmdCertificate or a Uint8Array', x);
}

/** Bytes the signature covers: offset 0 to the end of the modulus. */
export function amdCertSignedBytes(cert: AmdCertificate): Buffer {
  const b = serializeAmdCert(cert);
  return b.subarray(0, b.length - cert.modulusBits / 8);
}

export function amdHashForBits(bits: number): 'sha256' | 'sha384' {
  return bits > 2048 ? 'sha384' : 'sha256';
}

/** RSA public key; throws SevCertError('invalid-public-key') for sizes other than 2048/4096. */
export function amdCertPublicKey(cert: AmdCertificate): KeyObject {
  if ((cert.modulusBits !== 2048 && cert.modulusBits !== 4096) || cert.modulus.length !== cert.modulusBits / 8) {
    throw new SevCertError('invalid-public-key', `RSA modulus size ${cert.modulusBits} is not 2048 or 4096`);
  }
  try {
    return rsaPublicKeyFromLe(cert.modulus, cert.pubExp);
  } catch (e) {
    throw new SevCertError('invalid-public-key', `RSA key rejected: ${(e as Error).message}`);
  }
}

/**
 * How an AMD key appears as a SEV-certificate signer (the ASK signing a CEK): usage = key_usage,
 * algo RSA_SHA256 for 2048-bit keys, RSA_SHA384 for 4096-bit ones (Naples 0x1, Rome+ 0x101).
 */
export function amdCertVerifier(cert: AmdCertificate): { usage: number; algo: number; publicKey: KeyObject } {
  return {
    usage: cert.keyUsage,
    algo: cert.modulusBits > 2048 ? SevAlgo.RSA_SHA384 : SevAlgo.RSA_SHA256,
    publicKey: amdCertPublicKey(cert),
  };
}

export interface CreateAmdCertOptions {
  keyId: Uint8Array;
  /** Default: keyId (self-signed). */
  certifyingId?: Uint8Array;
  keyUsage: number;
  publicKey: KeyObject;
}

/** An unsigned AMD certificate (zero signature); exponent field as wide as the modulus, as AMD's. */
export function createAmdCert(opts: CreateAmdCertOptions): AmdCertificate {
  checkObject('options', opts);
  const { n, e, bits } = rsaComponents(opts.publicKey);
  if (bits !== 2048 && bits !== 4096) throw invalidArgValue('options.publicKey', bits, 'must be a 2048- or 4096-bit RSA key');
  const m = bits / 8;
  const modulus = Buffer.alloc(m);
  reversed(n).copy(modulus);
  const pubExp = Buffer.alloc(m);
  reversed(e).copy(pubExp);
  const keyId = copy(checkBytes('options.keyId', opts.keyId, AMD_KEY_ID_SIZE));
  return {
    format: 'amd',
    version: 1,
    keyId,
    certifyingId:
      opts.certifyingId === undefined ? copy(keyId) : copy(checkBytes('options.certifyingId', opts.certifyingId, AMD_KEY_ID_SIZE)),
    keyUsage: checkU32('options.keyUsage', opts.keyUsage),
    reserved: Buffer.alloc(16),
    pubExpBits: bits,
    modulusBits: bits,
    pubExp,
    modulus,
    signature: Buffer.alloc(m),
  };
}

/** Sign with the signer's RSA private key (hash by the signer's size). */
export function signAmdCert(cert: AmdCertificate, signerPrivateKey: KeyObject): AmdCertificate {
  const c = toAmdCert(cert);
  if (signerPrivateKey?.type !== 'private' || signerPrivateKey.asymmetricKeyType !== 'rsa') {
    throw invalidArgType('signerPrivateKey', 'a private RSA KeyObject', signerPrivateKey);
  }
  const bits = rsaComponents(signerPrivateKey).bits;
  const sig = rsaPssSign(amdHashForBits(bits), amdCertSignedBytes(c), signerPrivateKey);
  if (sig.length !== c.modulusBits / 8) {
    throw invalidArgValue('signerPrivateKey', bits, `makes ${sig.length}-byte signatures; the certificate holds ${c.modulusBits / 8}`);
  }
  return { ...c, signature: reversed(sig) };
}

/**
 * Check `cert` against `signer` (itself for the ARK): version 1, usable key, certifying_id ==
 * signer's key_id, RSA-PSS signature.
 */
export function verifyAmdCert(cert: AmdCertificate | Uint8Array, signer: AmdCertificate | Uint8Array): CertCheck {
  const c = toAmdCert(cert);
  const s = toAmdCert(signer, 'signer');
  if (c.version !== 1) return { ok: false, reason: 'bad-version', detail: `version is ${c.version}, not 1` };
  try {
    amdCertPublicKey(c);
  } catch (e) {
    if (e instanceof SevCertError) return { ok: false, reason: e.reason, detail: e.message };
    throw e;
  }
  let key: KeyObject;
  try {
    key = amdCertPublicKey(s);
  } catch (e) {
    if (e instanceof SevCertError) return { ok: false, reason: 'invalid-signer-key', detail: e.message };
    throw e;
  }
  if (!bytesEqual(c.certifyingId, s.keyId)) {
    return {
      ok: false,
      reason: 'key-id-mismatch',
      detail: `certifying id ${c.certifyingId.toString('hex')} is not the signer's key id ${s.keyId.toString('hex')}`,
    };
  }
  if (!rsaPssVerify(amdHashForBits(s.modulusBits), amdCertSignedBytes(c), key, reversed(c.signature))) {
    return { ok: false, reason: 'bad-signature', detail: 'RSA-PSS signature does not verify' };
  }
  return { ok: true, slot: 1 };
}

export const AmdKeyUsage = { ARK: SevUsage.ARK, ASK: SevUsage.ASK } as const;
