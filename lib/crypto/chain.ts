/**
 * Chain verification (§7.1 "Chain"): ARK (self) → ASK → CEK → PEK → PDH, and
 * OCA (self) → PEK. Each link first checks the child's place in the chain (version, usage,
 * algorithm, key), then the signature, and fails with a SevChainError naming the link and why.
 */
import { bytesEqual } from './bytes.js';
import { amdCertVerifier, toAmdCert, verifyAmdCert } from './amd-cert.js';
import type { AmdCertificate } from './amd-cert.js';
import type { AmdGeneration } from './amd-root-certs.js';
import { identifyGeneration } from './builtin-amd-roots.js';
import { SevUsage, algoName, isEcdhAlgo, isEcdsaAlgo, usageName } from './cert-codes.js';
import { SevCertError, SevChainError } from './errors.js';
import type { CertCheck, ChainLink } from './errors.js';
import { sevCertPublicKey, toSevCert, verifySevCert } from './sev-cert.js';
import type { SevCertificate, SevSigner } from './sev-cert.js';

export type SevCertInput = SevCertificate | Uint8Array;
export type AmdCertInput = AmdCertificate | Uint8Array;

export interface OcaChainInput {
  oca: SevCertInput;
  pek: SevCertInput;
  pdh: SevCertInput;
}
export interface CekChainInput {
  ark: AmdCertInput;
  ask: AmdCertInput;
  cek: SevCertInput;
  pek: SevCertInput;
  pdh: SevCertInput;
}
export interface ChainInput extends CekChainInput {
  oca: SevCertInput;
}

export interface AmdRootsOptions {
  /**
   * ARKs to trust (matched by key id, modulus and exponent). Without it any well-formed,
   * self-signed ARK is accepted: pass the built-in roots (lib/owner does) to pin AMD's keys.
   */
  trustedArks?: readonly AmdCertInput[];
}

export interface VerifiedAmdRoots {
  ark: AmdCertificate;
  ask: AmdCertificate;
  /** Built-in generation the ARK belongs to; undefined for a minted root. */
  generation: AmdGeneration | undefined;
}

export interface VerifiedChain extends VerifiedAmdRoots {
  cek: SevCertificate;
  oca: SevCertificate;
  pek: SevCertificate;
  pdh: SevCertificate;
}

function fail(link: ChainLink, r: CertCheck): never {
  if (r.ok) throw new Error('unreachable');
  throw new SevChainError(link, r.reason, r.detail);
}

/** ARK self-signature (and pinning), ASK ← ARK. */
export function verifyAmdRoots(arkIn: AmdCertInput, askIn: AmdCertInput, options: AmdRootsOptions = {}): VerifiedAmdRoots {
  const ark = toAmdCert(arkIn, 'ark');
  const ask = toAmdCert(askIn, 'ask');
  if (ark.keyUsage !== SevUsage.ARK) {
    throw new SevChainError('ark-self', 'wrong-usage', `key usage 0x${ark.keyUsage.toString(16)} is not ARK (0x0)`);
  }
  const self = verifyAmdCert(ark, ark);
  if (!self.ok) fail('ark-self', self);
  if (options.trustedArks) {
    const trusted = options.trustedArks.some((t) => {
      const a = toAmdCert(t, 'trustedArks[]');
      return bytesEqual(a.keyId, ark.keyId) && bytesEqual(a.modulus, ark.modulus) && bytesEqual(a.pubExp, ark.pubExp);
    });
    if (!trusted) throw new SevChainError('ark-self', 'untrusted-root', `ARK ${ark.keyId.toString('hex')} is not a trusted root`);
  }
  if (ask.keyUsage !== SevUsage.ASK) {
    throw new SevChainError('ask-by-ark', 'wrong-usage', `key usage 0x${ask.keyUsage.toString(16)} is not ASK (0x13)`);
  }
  const r = verifyAmdCert(ask, ark);
  if (!r.ok) fail('ask-by-ark', r);
  return { ark, ask, generation: identifyGeneration(ark) };
}

/** One SEV-format link: the child's place, then its signature by `signer`. */
export function verifySevLink(
  link: ChainLink,
  childIn: SevCertInput,
  signer: SevSigner,
  expectedUsage: number,
  algoFits: (algo: number) => boolean,
): SevCertificate {
  const child = toSevCert(childIn, link);
  if (child.version !== 1) throw new SevChainError(link, 'bad-version', `version is ${child.version}, not 1`);
  if (child.pubKeyUsage !== expectedUsage) {
    throw new SevChainError(link, 'wrong-usage', `usage ${usageName(child.pubKeyUsage)} where ${usageName(expectedUsage)} belongs`);
  }
  if (!algoFits(child.pubKeyAlgo)) {
    throw new SevChainError(
      link,
      'invalid-algorithm',
      `algorithm ${algoName(child.pubKeyAlgo)} does not fit a ${usageName(expectedUsage)}`,
    );
  }
  try {
    sevCertPublicKey(child);
  } catch (e) {
    if (e instanceof SevCertError) throw new SevChainError(link, e.reason, e.message);
    throw e;
  }
  const r = verifySevCert(child, signer, { checkBody: false });
  if (!r.ok) fail(link, r);
  return child;
}

/** OCA (self) → PEK → PDH: what the DOMAIN policy bit makes SEND_START check (§6). */
export function verifyOcaChain(input: OcaChainInput): { oca: SevCertificate; pek: SevCertificate; pdh: SevCertificate } {
  const ocaCert = toSevCert(input.oca, 'oca');
  const oca = verifySevLink('oca-self', ocaCert, ocaCert, SevUsage.OCA, isEcdsaAlgo);
  const pek = verifySevLink('pek-by-oca', input.pek, oca, SevUsage.PEK, isEcdsaAlgo);
  const pdh = verifySevLink('pdh-by-pek', input.pdh, pek, SevUsage.PDH, isEcdhAlgo);
  return { oca, pek, pdh };
}

function askSigner(ask: AmdCertificate): SevSigner {
  try {
    return amdCertVerifier(ask);
  } catch (e) {
    if (e instanceof SevCertError) throw new SevChainError('cek-by-ask', 'invalid-signer-key', e.message);
    throw e;
  }
}

/** ARK → ASK → CEK → PEK → PDH: what the SEV policy bit makes SEND_START check (§6). */
export function verifyCekChain(
  input: CekChainInput,
  options: AmdRootsOptions = {},
): VerifiedAmdRoots & { cek: SevCertificate; pek: SevCertificate; pdh: SevCertificate } {
  const roots = verifyAmdRoots(input.ark, input.ask, options);
  const cek = verifySevLink('cek-by-ask', input.cek, askSigner(roots.ask), SevUsage.CEK, isEcdsaAlgo);
  const pek = verifySevLink('pek-by-cek', input.pek, cek, SevUsage.PEK, isEcdsaAlgo);
  const pdh = verifySevLink('pdh-by-pek', input.pdh, pek, SevUsage.PDH, isEcdhAlgo);
  return { ...roots, cek, pek, pdh };
}

/**
 * The whole chain with the ARK and ASK given, in the order ark-self, ask-by-ark, cek-by-ask,
 * pek-by-cek, oca-self, pek-by-oca, pdh-by-pek. Throws SevChainError at the first failing link.
 * (The guest owner's `verifyChain` in `kvm-sev/owner` builds on it: it finds the root among AMD's
 * and the caller's.)
 */
export function verifyFullChain(input: ChainInput, options: AmdRootsOptions = {}): VerifiedChain {
  const roots = verifyAmdRoots(input.ark, input.ask, options);
  const cek = verifySevLink('cek-by-ask', input.cek, askSigner(roots.ask), SevUsage.CEK, isEcdsaAlgo);
  const pek = verifySevLink('pek-by-cek', input.pek, cek, SevUsage.PEK, isEcdsaAlgo);
  const ocaCert = toSevCert(input.oca, 'oca');
  const oca = verifySevLink('oca-self', ocaCert, ocaCert, SevUsage.OCA, isEcdsaAlgo);
  verifySevLink('pek-by-oca', pek, oca, SevUsage.PEK, isEcdsaAlgo);
  const pdh = verifySevLink('pdh-by-pek', input.pdh, pek, SevUsage.PDH, isEcdhAlgo);
  return { ...roots, cek, oca, pek, pdh };
}
