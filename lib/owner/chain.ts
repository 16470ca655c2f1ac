/**
 * Guest owner: verify a platform's certificates against AMD's built-in roots (Naples..Turin),
 * or against extra roots the caller trusts (e.g. a mock platform's minted root).
 */
import { checkBytes } from '../crypto/bytes.js';
import { parseSevCert, SEV_CERT_SIZE } from '../crypto/sev-cert.js';
import type { SevCertificate } from '../crypto/sev-cert.js';
import { splitAmdCerts, toAmdCert } from '../crypto/amd-cert.js';
import type { AmdCertificate } from '../crypto/amd-cert.js';
import type { AmdGeneration } from '../crypto/amd-root-certs.js';
import { allBuiltinRoots, builtinRoots } from '../crypto/builtin-amd-roots.js';
import { verifyChain as verifyFullChain } from '../crypto/chain.js';
import type { AmdCertInput, SevCertInput, VerifiedChain } from '../crypto/chain.js';
import { invalidArgValue, SevChainError, SevFormatError } from '../crypto/errors.js';

export interface OwnerChainInput {
  cek: SevCertInput;
  oca: SevCertInput;
  pek: SevCertInput;
  pdh: SevCertInput;
  /** The platform's ARK/ASK, if it sent them; the ARK must still be a trusted root. */
  ark?: AmdCertInput;
  ask?: AmdCertInput;
  /** Only try this generation's built-in roots. */
  generation?: AmdGeneration;
  /** Roots trusted besides AMD's (e.g. a mock platform's minted ARK/ASK). */
  extraRoots?: ReadonlyArray<{ ark: AmdCertInput; ask: AmdCertInput }>;
}

/**
 * Verify ARK → ASK → CEK → PEK → PDH and OCA → PEK. Without `ark`/`ask`, each trusted root pair
 * is tried and the one whose ASK signed the CEK wins. Throws SevChainError (`link`, `reason`).
 */
export function verifyChain(input: OwnerChainInput): VerifiedChain {
  const extra = (input.extraRoots ?? []).map((r) => ({
    ark: toAmdCert(r.ark, 'extraRoots[].ark'),
    ask: toAmdCert(r.ask, 'extraRoots[].ask'),
  }));
  const builtins = input.generation ? [builtinRoots(input.generation)] : allBuiltinRoots();
  const trustedArks: AmdCertificate[] = [...allBuiltinRoots().map((r) => r.ark), ...extra.map((r) => r.ark)];
  const certs = { cek: input.cek, oca: input.oca, pek: input.pek, pdh: input.pdh };
  if (input.ark !== undefined || input.ask !== undefined) {
    if (input.ark === undefined || input.ask === undefined)
      throw invalidArgValue('input', input.ark === undefined ? 'ask only' : 'ark only', 'must give both ark and ask, or neither');
    return verifyFullChain({ ...certs, ark: input.ark, ask: input.ask }, { trustedArks });
  }
  const candidates = [...builtins, ...extra];
  let best: SevChainError | undefined;
  for (const root of candidates) {
    try {
      return verifyFullChain({ ...certs, ark: root.ark, ask: root.ask }, { trustedArks });
    } catch (e) {
      if (!(e instanceof SevChainError)) throw e;
      // Prefer the error of a root that got past the CEK, then one whose ASK at least matched
      // the CEK's signature slot: that is the real reason, not "signed by another generation".
      if (!best || rank(e) > rank(best)) best = e;
    }
  }
  throw best ?? new SevChainError('cek-by-ask', 'untrusted-root', 'no trusted root to try');
}

function rank(e: SevChainError): number {
  if (e.link !== 'cek-by-ask' && e.link !== 'ark-self' && e.link !== 'ask-by-ark') return 3;
  if (e.link === 'cek-by-ask' && e.reason !== 'no-matching-signature' && e.reason !== 'bad-signature') return 2;
  if (e.link === 'cek-by-ask' && e.reason === 'bad-signature') return 1;
  return 0;
}

export interface PlatformCertBundle {
  pdh: SevCertificate;
  pek: SevCertificate;
  oca: SevCertificate;
  cek: SevCertificate;
  ask?: AmdCertificate;
  ark?: AmdCertificate;
}

/**
 * Split a `sevctl export` style file: PDH ‖ PEK ‖ OCA ‖ CEK [‖ ASK ‖ ARK] (docs/sev-reference.md §7.3).
 * PDH_CERT_EXPORT's second buffer alone (PEK ‖ OCA ‖ CEK) goes through {@link parsePlatformCerts}.
 */
export function parseCertBundle(bytes: Uint8Array): PlatformCertBundle {
  const b = checkBytes(bytes, 'bytes');
  if (b.length < 4 * SEV_CERT_SIZE)
    throw new SevFormatError(`a certificate bundle holds at least 4 × ${SEV_CERT_SIZE} bytes, got ${b.length}`);
  const at = (i: number): SevCertificate => parseSevCert(b.subarray(i * SEV_CERT_SIZE, (i + 1) * SEV_CERT_SIZE));
  const out: PlatformCertBundle = { pdh: at(0), pek: at(1), oca: at(2), cek: at(3) };
  if (b.length > 4 * SEV_CERT_SIZE) {
    const amd = splitAmdCerts(b.subarray(4 * SEV_CERT_SIZE));
    if (amd.length !== 2) throw new SevFormatError(`expected ASK ‖ ARK after the SEV certificates, found ${amd.length} AMD certificates`);
    out.ask = amd[0];
    out.ark = amd[1];
  }
  return out;
}

/** PDH_CERT_EXPORT's chain buffer: PEK ‖ OCA ‖ CEK (3 × 0x824). */
export function parsePlatformCerts(bytes: Uint8Array): { pek: SevCertificate; oca: SevCertificate; cek: SevCertificate } {
  const b = checkBytes(bytes, 'bytes');
  if (b.length !== 3 * SEV_CERT_SIZE) throw new SevFormatError(`PEK ‖ OCA ‖ CEK is ${3 * SEV_CERT_SIZE} bytes, got ${b.length}`);
  const at = (i: number): SevCertificate => parseSevCert(b.subarray(i * SEV_CERT_SIZE, (i + 1) * SEV_CERT_SIZE));
  return { pek: at(0), oca: at(1), cek: at(2) };
}
