/**
 * Before a byte of guest memory leaves: may this guest go to that platform? The checks the firmware
 * makes in SEND_START (AMD SEV API spec pub. 55766, SEND_START: NOSEND, then with the SEV policy bit
 * the CEK chain to AMD's root and the receiver's API version, with the DOMAIN bit the receiver's OCA
 * against ours), made here first so that a refusal says why, in words, and leaves the guest RUNNING.
 *
 * The chain PDH ← PEK ← CEK ← ASK ← ARK (and PEK ← OCA) is verified whatever the policy says: SEND_START
 * wraps the transport keys for the receiver's PDH, so a PDH the host did not verify could be anyone's
 * (the firmware skips the check without the SEV bit; the host has no reason to).
 */
import { KvmSevError } from '../../backend/errors.js';
import { serializeAmdCert, splitAmdCerts, toAmdCert, type AmdCertificate } from '../../crypto/amd-cert.js';
import { allBuiltinRoots } from '../../crypto/builtin-amd-roots.js';
import { verifyFullChain, type VerifiedChain } from '../../crypto/chain.js';
import { SevChainError } from '../../crypto/errors.js';
import { decodePolicy, policyAllowsApi } from '../../crypto/policy.js';
import { parseSevCert, serializeSevCert, SEV_CERT_SIZE } from '../../crypto/sev-cert.js';
import { SEV_POLICY } from '../../uapi/constants.js';

/** What the target says about itself (PLATFORM record). */
export interface TargetPlatform {
  /** The target's PDH certificate. */
  pdh: Uint8Array;
  /** PEK ‖ OCA ‖ CEK, as PDH_CERT_EXPORT gives it. */
  platCerts: Uint8Array;
  /** ASK ‖ ARK of the target's generation. */
  amdCerts: Uint8Array;
}

export function refused(reason: string): KvmSevError {
  return new KvmSevError('ERR_KVM_SEV_MIGRATION_REFUSED', `migration refused: ${reason}`);
}

/** NOSEND is decided without looking at the target: refuse before connecting. */
export function checkPolicyAllowsSending(policy: number): void {
  if ((policy & SEV_POLICY.NOSEND) !== 0)
    throw refused(
      `the guest's policy 0x${policy.toString(16)} has NOSEND (bit 3): the firmware refuses SEND_START for it, and no host may move it`,
    );
}

export interface CheckTargetOptions {
  policy: number;
  target: TargetPlatform;
  /** This platform's OCA (for the DOMAIN bit): PEK ‖ OCA ‖ CEK of this host's PDH_CERT_EXPORT. */
  sourcePlatCerts: Uint8Array;
  /** More AMD roots to trust besides AMD's (kvm-sev's mock root in tests: `mockAmdRoots()`). */
  trustedRoots?: ReadonlyArray<{ ark: AmdCertificate | Uint8Array }>;
}

/** Verifies the target's chain and the policy's DOMAIN and SEV requirements; throws the refusal with its reason. */
export function checkTarget(o: CheckTargetOptions): VerifiedChain {
  const t = o.target;
  if (t.platCerts.length !== 3 * SEV_CERT_SIZE)
    throw refused(`the target's PEK ‖ OCA ‖ CEK is ${t.platCerts.length} bytes, not ${3 * SEV_CERT_SIZE}`);
  let chain: VerifiedChain;
  try {
    const amd = splitAmdCerts(t.amdCerts);
    if (amd.length !== 2) throw refused(`the target sent ${amd.length} AMD certificates, not ASK ‖ ARK`);
    const at = (i: number) => parseSevCert(t.platCerts.subarray(i * SEV_CERT_SIZE, (i + 1) * SEV_CERT_SIZE));
    const trustedArks = [
      ...allBuiltinRoots().map((r) => r.ark),
      ...(o.trustedRoots ?? []).map((r) => toAmdCert(r.ark, 'trustedRoots[].ark')),
    ];
    chain = verifyFullChain({ ark: amd[1]!, ask: amd[0]!, cek: at(2), oca: at(1), pek: at(0), pdh: t.pdh }, { trustedArks });
  } catch (e) {
    if (e instanceof KvmSevError) throw e;
    if (e instanceof SevChainError) throw refused(`the target's certificate chain does not verify (${e.link}: ${e.message})`);
    throw refused(`the target's certificates cannot be read (${(e as Error).message})`);
  }
  const p = decodePolicy(o.policy);
  if ((o.policy & SEV_POLICY.SEV) !== 0 && !policyAllowsApi(o.policy, chain.pek.apiMajor, chain.pek.apiMinor)) {
    throw refused(
      `the guest's policy requires firmware API ${p.apiMajor}.${p.apiMinor} or later (SEV bit), the target's PEK says ${chain.pek.apiMajor}.${chain.pek.apiMinor}`,
    );
  }
  if ((o.policy & SEV_POLICY.DOMAIN) !== 0) {
    const ours = o.sourcePlatCerts.subarray(SEV_CERT_SIZE, 2 * SEV_CERT_SIZE);
    if (!serializeSevCert(chain.oca).equals(Buffer.from(ours)))
      throw refused(`the guest's policy has DOMAIN (bit 4): the target's OCA is not this host's, so it is outside the guest's domain`);
  }
  return chain;
}

/** ASK ‖ ARK as SEND_START takes them. */
export function amdCertsBytes(roots: { ask: AmdCertificate | Uint8Array; ark: AmdCertificate | Uint8Array }): Uint8Array {
  const b = (c: AmdCertificate | Uint8Array) => (c instanceof Uint8Array ? c : serializeAmdCert(c));
  return Buffer.concat([b(roots.ask), b(roots.ark)]);
}
