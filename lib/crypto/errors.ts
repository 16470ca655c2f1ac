/**
 * Errors of lib/crypto and lib/owner.
 *
 * Argument errors are lib/uapi/errors.ts's (Node's ERR_INVALID_ARG_TYPE etc.); cryptographic
 * failures are {@link SevCryptoError}s whose `code` names the class of failure and whose extra
 * fields say precisely what failed.
 */

export { invalidArgType, invalidArgValue, outOfRange } from '../uapi/errors.js';
export type { ArgError, ArgErrorCode } from '../uapi/errors.js';

export type SevCryptoErrorCode = 'ERR_SEV_BAD_MAC' | 'ERR_SEV_CHAIN' | 'ERR_SEV_CERT' | 'ERR_SEV_FORMAT';

/** Base class of the cryptographic failures. */
export class SevCryptoError extends Error {
  readonly code: SevCryptoErrorCode;
  constructor(code: SevCryptoErrorCode, message: string) {
    super(message);
    this.name = 'SevCryptoError';
    this.code = code;
  }
}

/** A byte string that does not have the layout the spec gives it. */
export class SevFormatError extends SevCryptoError {
  constructor(message: string) {
    super('ERR_SEV_FORMAT', message);
    this.name = 'SevFormatError';
  }
}

/**
 * Which MAC failed. 'wrap' = session WRAP_MAC (KIK), 'policy' = session POLICY_MAC (TIK),
 * 'secret' = LAUNCH_SECRET packet MAC, 'transport' = SEND/RECEIVE_UPDATE packet MAC,
 * 'measurement' = LAUNCH_MEASURE value. The firmware reports each as BAD_MEASUREMENT (§3.4, §5).
 */
export type MacKind = 'wrap' | 'policy' | 'secret' | 'transport' | 'measurement';

export class SevMacError extends SevCryptoError {
  readonly mac: MacKind;
  constructor(mac: MacKind, message: string) {
    super('ERR_SEV_BAD_MAC', message);
    this.name = 'SevMacError';
    this.mac = mac;
  }
}

/**
 * Why a certificate (or one link of a chain) was rejected.
 * - malformed-signature-slot: a slot with exactly one of usage/algo valid (firmware: BAD_SIGNATURE)
 * - no-matching-signature: no slot carries the signer's (usage, algo) (INVALID_CERTIFICATE)
 * - bad-signature: the matching slot does not verify (BAD_SIGNATURE)
 * - bad-version: version field is not 1
 * - wrong-usage: the key usage does not fit the certificate's place (e.g. a PEK where a PDH belongs)
 * - invalid-algorithm: the key algorithm does not fit the usage
 * - invalid-public-key: unknown curve, point not on P-384, coordinate out of range, bad RSA sizes
 * - invalid-signer-key: the signer's own public key is unusable
 * - key-id-mismatch: AMD cert whose certifying_id is not the signer's key_id (or a self-signed ARK
 *   whose ids differ)
 * - untrusted-root: ARK is not one of the trusted roots
 */
export type CertFailureReason =
  | 'malformed-signature-slot'
  | 'no-matching-signature'
  | 'bad-signature'
  | 'bad-version'
  | 'wrong-usage'
  | 'invalid-algorithm'
  | 'invalid-public-key'
  | 'invalid-signer-key'
  | 'key-id-mismatch'
  | 'untrusted-root';

/** Firmware status a certificate failure maps to (§7.1, §9). */
export type CertFirmwareStatus = 'INVALID_CERTIFICATE' | 'BAD_SIGNATURE';

export function firmwareStatusOf(reason: CertFailureReason): CertFirmwareStatus {
  return reason === 'bad-signature' || reason === 'malformed-signature-slot' ? 'BAD_SIGNATURE' : 'INVALID_CERTIFICATE';
}

/** A single certificate rejected outside a chain (e.g. a GODH). */
export class SevCertError extends SevCryptoError {
  readonly reason: CertFailureReason;
  readonly firmwareStatus: CertFirmwareStatus;
  constructor(reason: CertFailureReason, message: string) {
    super('ERR_SEV_CERT', message);
    this.name = 'SevCertError';
    this.reason = reason;
    this.firmwareStatus = firmwareStatusOf(reason);
  }
}

/** One signature relation of the chain ARK → ASK → CEK → PEK ← OCA, PEK → PDH. */
export type ChainLink = 'ark-self' | 'ask-by-ark' | 'cek-by-ask' | 'pek-by-cek' | 'oca-self' | 'pek-by-oca' | 'pdh-by-pek';

export class SevChainError extends SevCryptoError {
  readonly link: ChainLink;
  readonly reason: CertFailureReason;
  readonly firmwareStatus: CertFirmwareStatus;
  /** What failed, in words (the message without the link and reason). */
  readonly detail: string;
  /** What to do about it, when known (e.g. the chain is signed by the kvm-sev mock root). */
  declare hint?: string;
  constructor(link: ChainLink, reason: CertFailureReason, detail: string, hint?: string) {
    super('ERR_SEV_CHAIN', `certificate chain link ${link} failed (${reason}): ${detail}${hint ? `. ${hint}` : ''}`);
    this.name = 'SevChainError';
    this.link = link;
    this.reason = reason;
    this.firmwareStatus = firmwareStatusOf(reason);
    this.detail = detail;
    if (hint !== undefined) this.hint = hint;
  }
}

/** Outcome of checking one certificate against one signer (or its body alone). */
export type CertCheck =
  | { readonly ok: true; /** Slot that verified (1 or 2); 0 for a body-only check. */ readonly slot: 0 | 1 | 2 }
  | { readonly ok: false; readonly reason: CertFailureReason; readonly detail: string };
