/**
 * The legacy SEV ATTESTATION report (command 0x36, API ≥ 0.23; §4.5): 0xD0 bytes,
 * ECDSA P-384 by the PEK over SHA-256 of bytes 0x00..0x33 (mnonce ‖ launch digest ‖ policy).
 */
import type { KeyObject } from 'node:crypto';
import { bigIntToLe, copy, leToBigInt, u32le } from './bytes.js';
import { checkBytes, checkObject, checkU32 } from '../uapi/args.js';
import { SevAlgo, SevUsage } from './cert-codes.js';
import { ecdsaSignP384, ecdsaVerifyP384, isP384Key } from './ecc.js';
import { invalidArgValue, SevCertError, SevFormatError } from './errors.js';
import { SEV_ECC_FIELD, sevCertPublicKey, toSevCert } from './sev-cert.js';
import type { SevCertificate } from './sev-cert.js';

export const ATTESTATION_REPORT_SIZE = 0xd0;
const SIGNED = 0x34;

export interface AttestationReport {
  mnonce: Buffer;
  launchDigest: Buffer;
  policy: number;
  sigUsage: number;
  sigAlgo: number;
  reserved: number;
  /** 144 bytes: r[72] LE ‖ s[72] LE. */
  sig: Buffer;
}

export function parseAttestationReport(bytes: Uint8Array): AttestationReport {
  const b = checkBytes('bytes', bytes);
  if (b.length !== ATTESTATION_REPORT_SIZE)
    throw new SevFormatError(`an attestation report is ${ATTESTATION_REPORT_SIZE} bytes, got ${b.length}`);
  return {
    mnonce: copy(b.subarray(0, 0x10)),
    launchDigest: copy(b.subarray(0x10, 0x30)),
    policy: b.readUInt32LE(0x30),
    sigUsage: b.readUInt32LE(0x34),
    sigAlgo: b.readUInt32LE(0x38),
    reserved: b.readUInt32LE(0x3c),
    sig: copy(b.subarray(0x40, 0xd0)),
  };
}

export function serializeAttestationReport(r: AttestationReport): Buffer {
  checkObject('report', r);
  return Buffer.concat([
    checkBytes('report.mnonce', r.mnonce, 16),
    checkBytes('report.launchDigest', r.launchDigest, 32),
    u32le(checkU32('report.policy', r.policy)),
    u32le(checkU32('report.sigUsage', r.sigUsage)),
    u32le(checkU32('report.sigAlgo', r.sigAlgo)),
    u32le(checkU32('report.reserved', r.reserved)),
    checkBytes('report.sig', r.sig, 2 * SEV_ECC_FIELD),
  ]);
}

/** Firmware side: sign with the PEK private key. */
export function signAttestationReport(
  fields: { mnonce: Uint8Array; launchDigest: Uint8Array; policy: number },
  pekPrivateKey: KeyObject,
): AttestationReport {
  if (!isP384Key(pekPrivateKey) || pekPrivateKey.type !== 'private')
    throw invalidArgValue('pekPrivateKey', pekPrivateKey?.asymmetricKeyType, 'must be a P-384 private key');
  const unsigned: AttestationReport = {
    mnonce: copy(checkBytes('mnonce', fields.mnonce, 16)),
    launchDigest: copy(checkBytes('launchDigest', fields.launchDigest, 32)),
    policy: checkU32('policy', fields.policy),
    sigUsage: SevUsage.PEK,
    sigAlgo: SevAlgo.ECDSA_SHA256,
    reserved: 0,
    sig: Buffer.alloc(2 * SEV_ECC_FIELD),
  };
  const { r, s } = ecdsaSignP384('sha256', serializeAttestationReport(unsigned).subarray(0, SIGNED), pekPrivateKey);
  return { ...unsigned, sig: Buffer.concat([bigIntToLe(r, SEV_ECC_FIELD), bigIntToLe(s, SEV_ECC_FIELD)]) };
}

/** Check the report's signature under the PEK certificate (usage/algo must name the PEK). */
export function verifyAttestationReport(report: AttestationReport | Uint8Array, pek: SevCertificate | Uint8Array): boolean {
  const r = report instanceof Uint8Array ? parseAttestationReport(report) : report;
  const cert = toSevCert(pek, 'pek');
  if (r.sigUsage !== cert.pubKeyUsage || r.sigAlgo !== cert.pubKeyAlgo || cert.pubKeyUsage !== SevUsage.PEK) return false;
  let key: KeyObject;
  try {
    key = sevCertPublicKey(cert);
  } catch (e) {
    if (e instanceof SevCertError) return false;
    throw e;
  }
  const sig = { r: leToBigInt(r.sig.subarray(0, SEV_ECC_FIELD)), s: leToBigInt(r.sig.subarray(SEV_ECC_FIELD)) };
  const hash = (r.sigAlgo & 0x100) !== 0 ? 'sha384' : 'sha256';
  return ecdsaVerifyP384(hash, serializeAttestationReport(r).subarray(0, SIGNED), key, sig);
}
