/**
 * Guest owner: verify a platform's certificates against AMD's built-in roots (Naples..Turin),
 * or against extra roots the caller trusts (e.g. kvm-sev's mock root, in tests). A chain that fails
 * because it is signed by kvm-sev's mock root says so.
 */
import { checkBytes } from '../uapi/args.js';
import { parseSevCert, SEV_CERT_SIZE } from '../crypto/sev-cert.js';
import type { SevCertificate } from '../crypto/sev-cert.js';
import { splitAmdCerts, toAmdCert } from '../crypto/amd-cert.js';
import type { AmdCertificate } from '../crypto/amd-cert.js';
import type { AmdGeneration } from '../crypto/amd-root-certs.js';
import { allBuiltinRoots, builtinRoots } from '../crypto/builtin-amd-roots.js';
import { verifyFullChain } from '../crypto/chain.js';
import type { AmdCertInput, SevCertInput, VerifiedChain } from '../crypto/chain.js';
import { invalidArgValue, SevChainError, SevFormatError } from '../crypto/errors.js';
import { cekSignedByMockRoot, isMockRootCert, MOCK_ROOT_NAME } from '../crypto/mock-root-fingerprints.js';

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
  /**
   * Roots trusted besides AMD's. In tests of a mock or hybrid platform: `mockAmdRoots()` from
   * `kvm-sev/mock` (kvm-sev's mock root; never trust it outside tests).
   */
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
  const mockTrusted = extra.some((r) => isMockRootCert(r.ark));
  if (input.ark !== undefined || input.ask !== undefined) {
    if (input.ark === undefined || input.ask === undefined)
      throw invalidArgValue('input', input.ark === undefined ? 'ask only' : 'ark only', 'must give both ark and ask, or neither');
    const ark = toAmdCert(input.ark, 'input.ark');
    try {
      return verifyFullChain({ ...certs, ark, ask: input.ask }, { trustedArks });
    } catch (e) {
      throw mockRootHint(e, !mockTrusted && isMockRootCert(ark));
    }
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
  const e = best ?? new SevChainError('cek-by-ask', 'untrusted-root', 'no trusted root to try');
  throw mockRootHint(e, !mockTrusted && e.link === 'cek-by-ask' && cekSignedByMockRoot(input.cek));
}

/** The same error, saying that the chain is signed by kvm-sev's mock root and how tests trust it. */
function mockRootHint(e: unknown, signedByMock: boolean): unknown {
  if (!signedByMock || !(e instanceof SevChainError)) return e;
  return new SevChainError(
    e.link,
    e.reason,
    e.detail,
    `The chain is signed by ${MOCK_ROOT_NAME}: this platform is a kvm-sev mock (kvm-sev/mock, or the hybrid backend). ` +
      "In tests, trust it with verifyChain({ ..., extraRoots: mockAmdRoots() }), mockAmdRoots from 'kvm-sev/mock'; never in production",
  );
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
  const b = checkBytes('bytes', bytes);
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
  const b = checkBytes('bytes', bytes);
  if (b.length !== 3 * SEV_CERT_SIZE) throw new SevFormatError(`PEK ‖ OCA ‖ CEK is ${3 * SEV_CERT_SIZE} bytes, got ${b.length}`);
  const at = (i: number): SevCertificate => parseSevCert(b.subarray(i * SEV_CERT_SIZE, (i + 1) * SEV_CERT_SIZE));
  return { pek: at(0), oca: at(1), cek: at(2) };
}
